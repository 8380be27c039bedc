# logspout: one static binary and CA certificates, nothing else. Built by docker/build-images.sh.
# Runs as root: it reads the Docker socket, which is root's.
FROM scratch
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY logspout /bin/logspout
# GET /health on PORT/HTTP_PORT (default 80).
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["/bin/logspout", "healthcheck"]
ENTRYPOINT ["/bin/logspout"]
