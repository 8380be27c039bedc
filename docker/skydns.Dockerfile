# skydns: one static binary and CA certificates, nothing else. Built by docker/build-images.sh.
# Runs as nobody (65534). On a Docker network it may still bind port 53 (Docker 20.10+ lets
# containers bind low ports); with --net=host, port 53 needs `--user 0`.
FROM scratch
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY skydns /bin/skydns
USER 65534:65534
# A DNS query for the SOA of -domain to -addr (flags read from PID 1's command line).
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["/bin/skydns", "healthcheck"]
ENTRYPOINT ["/bin/skydns"]
