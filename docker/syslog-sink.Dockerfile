# syslog-sink: a minimal central syslog receiver (one static binary, nothing else) for the
# `docker-rsyslog` fleet unit and the tests. Built by docker/build-images.sh. It prints every
# message it receives on UDP/TCP 514 as a line on stdout (`docker logs`); use a real rsyslog image
# to store or forward logs.
# Runs as nobody: Docker 20.10+ lets containers bind low ports on their own network.
# No EXPOSE: registrator names a container with several ports `<name>-<port>`, so publish just
# the one the route uses (`-p …:514:514/udp` for `syslog://`).
FROM scratch
COPY syslog-sink /bin/syslog-sink
USER 65534:65534
ENTRYPOINT ["/bin/syslog-sink"]
