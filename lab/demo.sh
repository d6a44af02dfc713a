#!/usr/bin/env bash
# The demo: a lab fleet of containers taken from nothing to mutual TLS, then verified.
#   make demo        (make lab-down removes it)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${FLEETPKI_VENV:-.venv}/bin
export ANSIBLE_CONFIG=$PWD/ansible.cfg

lab/ensure-docker.sh
lab/lab.sh up
started=$(date +%s)
"$bin/ansible-playbook" -i inventories/lab site.yml
rollout=$(( $(date +%s) - started ))
"$bin/ansible-playbook" -i inventories/lab playbooks/verify.yml | tee /tmp/fleetpki-demo-verify.log

cat <<EOT

fleetpki demo: what was deployed and verified (site.yml took ${rollout} s)
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
echo "Try: docker exec -it worker1 bash    Remove the lab: make lab-down"
