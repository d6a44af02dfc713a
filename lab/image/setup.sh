#!/bin/sh
# Run inside the image's root filesystem once the packages are installed (mmdebstrap chroot or docker build),
# after lab/image/overlay/ has been copied onto it. Lab-only: never part of the roles.
set -eu
# The SSH user Ansible logs in as, then becomes root with sudo. Not `fleet`: that is the workers' and the API's
# service user (worker_tls_user, api_tls_user, reference_services_user), which must not hold sudo, and which the
# reference_services role creates with a nologin shell. No password ('*' matches no password yet is not a "locked" account to sshd),
# a key in ~/.ssh/authorized_keys installed at boot by lab-authorized-keys.service (overlay/etc/systemd/system).
id deploy >/dev/null 2>&1 || useradd --create-home --shell /bin/bash deploy
usermod --password '*' deploy
install -d -m 0700 -o deploy -g deploy /home/deploy/.ssh
chown root:root /etc/sudoers.d/deploy
chmod 0440 /etc/sudoers.d/deploy
visudo -cf /etc/sudoers.d/deploy >/dev/null
# Host keys are made at container start (ssh.service.d/lab-host-keys.conf): drop the ones the package made.
rm -f /etc/ssh/ssh_host_*
systemctl enable ssh.service lab-authorized-keys.service
systemctl mask getty@tty1.service console-getty.service systemd-logind.service
# Redis is started by the roles, not at boot.
systemctl disable redis-server.service
# Every container gets its own machine-id at boot.
rm -f /etc/machine-id /var/lib/dbus/machine-id
: > /etc/machine-id
