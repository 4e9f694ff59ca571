#!/usr/bin/env bash
# Demo certificates for docker-compose.yml (and for trying TLS by hand): a demo CA, the followup
# node's certificate (the API's HTTPS and the DICOM listener's TLS; also our client certificate
# when we send to the PACS) and the demo PACS's (Orthanc: its client certificate when it sends to
# us, its server certificate when we send back). NOT for production: the CA's key sits beside them.
#
#   scripts/make-demo-certs.sh [OUT_DIR]     (default deploy/demo-certs; refuses to overwrite)
#
# OUT_DIR/ca.pem           the demo CA (trust it in browsers/curl: curl --cacert OUT_DIR/ca.pem)
# OUT_DIR/ca.key           its key (only to sign more demo certificates)
# OUT_DIR/followup.pem/.key  CN followup; names localhost, api, dicom, followup, 127.0.0.1
# OUT_DIR/pacs.pem/.key      CN orthanc; names orthanc, localhost, 127.0.0.1
# Keys are mode 0600: the containers read them as the file's owner (the image's user "followup"
# has uid 1000; see docs/security/deployment.md when yours differs).
set -euo pipefail

out=${1:-deploy/demo-certs}
days=${DEMO_CERT_DAYS:-825}
if [ -e "$out/ca.pem" ]; then
  echo "make-demo-certs: $out/ca.pem exists; remove $out to make new ones" >&2
  exit 1
fi
command -v openssl >/dev/null || { echo "make-demo-certs: openssl is needed" >&2; exit 1; }
mkdir -p "$out"
umask 077
cd "$out"
cat > openssl.cnf <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[followup]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:localhost,DNS:api,DNS:dicom,DNS:followup,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[pacs]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:orthanc,DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
quiet() { "$@" 2>/dev/null || { echo "make-demo-certs: failed: $*" >&2; exit 1; }; }
quiet openssl req -x509 -new -config openssl.cnf -extensions ca -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -nodes -keyout ca.key -out ca.pem -days "$days" -subj "/CN=followup demo CA"
serial=1
for name in followup pacs; do
  cn=$name; [ "$name" = pacs ] && cn=orthanc
  quiet openssl req -new -config openssl.cnf -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$name.key" -out "$name.csr" -subj "/CN=$cn"
  quiet openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -set_serial "$serial" -days "$days" \
    -extfile openssl.cnf -extensions "$name" -out "$name.pem"
  rm -f "$name.csr"
  serial=$((serial + 1))
done
rm -f openssl.cnf
chmod 600 ./*.key
chmod 644 ./*.pem
openssl verify -CAfile ca.pem followup.pem pacs.pem >/dev/null
echo "demo certificates in $out: ca.pem, followup.pem/.key, pacs.pem/.key"
