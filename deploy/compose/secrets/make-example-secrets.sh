#!/usr/bin/env sh
# Writes the secret files compose.yaml reads, next to this script, readable by you only.
# Redis: the example passwords whose hashes deploy/redis/users.acl ships (replace both the
# ACL hashes and these files before real use: see deploy/redis/README.md). Grafana: a random
# admin password. Cameras: from CAM_PLATFORM1_PASSWORD and CAM_CONCOURSE_PASSWORD, which
# must be set. Existing files are kept.
#
# Permissions: compose bind-mounts each file with its host mode, and the containers run as
# other users (the pipeline as uid 10001, Redis as its own), so the files are 0644 and the
# folder is made 0700: only you can reach them on the host.
set -eu
cd "$(dirname "$0")"
chmod 700 .
umask 022

write() {  # write NAME VALUE, unless NAME exists
    if [ ! -e "$1" ]; then
        printf %s "$2" > "$1"
        echo "wrote $1"
    fi
}

: "${CAM_PLATFORM1_PASSWORD:?set CAM_PLATFORM1_PASSWORD (camera platform-1)}"
: "${CAM_CONCOURSE_PASSWORD:?set CAM_CONCOURSE_PASSWORD (camera concourse-east)}"
write redis_pipeline_password change-me-pipeline
write redis_consumer_password change-me-consumer
write cam_platform1_password "$CAM_PLATFORM1_PASSWORD"
write cam_concourse_password "$CAM_CONCOURSE_PASSWORD"
write grafana_admin_password "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
