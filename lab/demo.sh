#!/usr/bin/env bash
# The demo: a lab fleet of containers taken from nothing to mutual TLS, then verified.
#   make demo        (make lab-down removes it)
# Ansible reaches the hosts over SSH as the user deploy with sudo (inventories/lab); FLEETPKI_LAB_INVENTORY=
# inventories/lab-docker reaches them with `docker exec` as root instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${FLEETPKI_VENV:-.venv}/bin
export ANSIBLE_CONFIG=$PWD/ansible.cfg
inventory=${FLEETPKI_LAB_INVENTORY:-inventories/lab}

lab/ensure-docker.sh
lab/lab.sh up
started=$(date +%s)
"$bin/ansible-playbook" -i "$inventory" site.yml
rollout=$(( $(date +%s) - started ))
"$bin/ansible-playbook" -i "$inventory" playbooks/verify.yml | tee /tmp/fleetpki-demo-verify.log

cat <<EOT

fleetpki demo: what was deployed and verified (site.yml took ${rollout} s over $inventory)
  host     role                      TLS files                               service
  redis1   redis_servers             /etc/redis/tls/redis-{cert,key}.pem     redis-server: port 0, tls-port 6379, tls-auth-clients yes
  worker1  workers                   /etc/fleetpki/worker/client-*.pem       fleet-worker (redis-py, mTLS, heartbeat with cert serial)
  worker2  workers                   /etc/fleetpki/worker/client-*.pem       fleet-worker
  api1     api_servers               /etc/fleetpki/api/api-*.pem             fleet-api: HTTPS :8443, client certs required
  pxe1     pki_clients               /etc/fleetpki/client/client-*.pem       trusts the CA (system store + /etc/fleetpki/ca-bundle.pem)
  control  CA (never leaves it)      pki/lab/ca/ca-{key,cert}.pem        

Verified (playbooks/verify.yml):
EOT
sed -n 's/^ *"\(\(STATUS\|OK\|FAIL\) .*\)",\{0,1\}$/  \1/p' /tmp/fleetpki-demo-verify.log | sed 's/\\"/"/g'
echo
echo "Try: ssh -i .build/lab-ssh/id_ed25519 -o UserKnownHostsFile=/dev/null deploy@172.30.99.12   (worker1; then sudo -i)"
echo "     docker exec -it worker1 bash    Remove the lab: make lab-down"
