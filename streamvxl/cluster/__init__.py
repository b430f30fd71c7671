"""Beyond one machine: cameras sharded over Ray Serve replicas, with failover from the log.

`placement` (which shard holds which camera: rendezvous hashing), `shard` (`CameraShard`: one
replica's hub and cameras; no Ray inside), `app` (the shard as a Serve application), `front`
(`ClusterService`: deploys the shards, places and moves cameras, bridges MQTT). Needs
``pip install 'streamvxl[ray]'``; nothing here is imported by the rest of the package.
"""
