#!/bin/sh
# fleetpki-enroll: run by a PXE-booted validation image to get a short-lived client certificate from the API host.
#
# The provisioning system puts the machine's one-time token (playbooks/enrollment_token.yml) on the kernel command
# line as fleetpki.token=<token>; the machine is named by fleetpki.machine=<MAC or serial>, else by pxelinux's
# BOOTIF=01-aa-bb-cc-dd-ee-ff. The key is made in FLEETPKI_DIR (default /run/fleetpki: a tmpfs, so in memory) and
# never leaves the machine; the certificate (with the enrollment CA's after it) is written beside it:
#   FLEETPKI_API=https://10.1.100.5:8443 FLEETPKI_CA=/etc/fleetpki/ca.pem fleetpki-enroll
#   curl --cacert /etc/fleetpki/ca.pem --cert /run/fleetpki/cert.pem --key /run/fleetpki/key.pem \
#        -X POST https://10.1.100.5:8443/api/v1/validation/report -d @report.json
# Needs a POSIX shell, openssl, curl (7.76 or later) and base64. The token is never put on a command line: it goes
# to curl on its standard input. It is not installed on any fleet host: copy it into the validation image.
set -euf  # -f: the command line's words are never globbed

api=${FLEETPKI_API:?set FLEETPKI_API to the API base URL, such as https://10.1.100.5:8443}
ca=${FLEETPKI_CA:-/etc/fleetpki/ca.pem}
cmdline=${FLEETPKI_CMDLINE:-/proc/cmdline}
dir=${FLEETPKI_DIR:-/run/fleetpki}

token='' machine='' bootif=''
line=; read -r line < "$cmdline" || true  # /proc/cmdline is one line
for word in ${line:-}; do
    case $word in
        fleetpki.token=*) token=${word#fleetpki.token=} ;;
        fleetpki.machine=*) machine=${word#fleetpki.machine=} ;;
        BOOTIF=01-*) bootif=$(printf '%s' "${word#BOOTIF=01-}" | tr '-' ':') ;;
    esac
done
machine=${machine:-$bootif}
case $token in
    '' | *[!A-Za-z0-9_-]*) echo "fleetpki-enroll: no fleetpki.token=<token> in $cmdline" >&2; exit 2 ;;
esac
case $machine in
    '' | *[!A-Za-z0-9:-]*) echo "fleetpki-enroll: no fleetpki.machine=<MAC or serial> or BOOTIF= in $cmdline" >&2
                           exit 2 ;;
esac

umask 077
mkdir -p "$dir"
chmod 700 "$dir"
if ! openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/key.pem"; then
    echo "fleetpki-enroll: openssl could not make a key in $dir" >&2
    exit 1
fi
csr=$(openssl req -new -key "$dir/key.pem" -subj "/CN=$machine" -outform DER | base64 | tr -d '\n')
status=0
printf '{"token": "%s", "machine": "%s", "csr": "%s"}' "$token" "$machine" "$csr" |
    curl -sS --fail-with-body --cacert "$ca" -H 'Content-Type: application/json' --data-binary @- \
         -o "$dir/cert.pem.new" "$api/api/v1/enroll" || status=$?
if [ "$status" -eq 22 ]; then
    echo "fleetpki-enroll: the API refused: $(cat "$dir/cert.pem.new" 2>/dev/null)" >&2
elif [ "$status" -ne 0 ]; then
    echo "fleetpki-enroll: could not reach $api over TLS with $ca (curl exit $status)" >&2
fi
if [ "$status" -ne 0 ]; then
    rm -f "$dir/cert.pem.new"
    exit 1
fi
mv "$dir/cert.pem.new" "$dir/cert.pem"
echo "fleetpki-enroll: $dir/cert.pem issued for $machine"
