#!/bin/sh
# Run inside the image's root filesystem once the packages are installed (mmdebstrap chroot or docker build),
# after lab/image/overlay/ has been copied onto it. Lab-only: never part of the roles.
set -eu
# The fleet's SSH user: no password ('*' matches no password yet is not a "locked" account to sshd),
# a key in ~/.ssh/authorized_keys put there by lab/lab.sh or molecule at container start.
id fleet >/dev/null 2>&1 || useradd --create-home --shell /bin/bash fleet
usermod --password '*' fleet
install -d -m 0700 -o fleet -g fleet /home/fleet/.ssh
chown root:root /etc/sudoers.d/fleet
chmod 0440 /etc/sudoers.d/fleet
visudo -cf /etc/sudoers.d/fleet >/dev/null
# Host keys are made at container start (ssh.service.d/lab-host-keys.conf): drop the ones the package made.
rm -f /etc/ssh/ssh_host_*
systemctl enable ssh.service
systemctl mask getty@tty1.service console-getty.service systemd-logind.service
# Redis is started by the roles, not at boot.
systemctl disable redis-server.service
# Every container gets its own machine-id at boot.
rm -f /etc/machine-id /var/lib/dbus/machine-id
: > /etc/machine-id
