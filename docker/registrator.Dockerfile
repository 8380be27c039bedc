# registrator: one static binary and CA certificates, nothing else. Built by docker/build-images.sh.
# Runs as root: it reads the Docker socket, which is root's.
FROM scratch
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY registrator /bin/registrator
# Docker and the registry's etcd answer (options read from PID 1's command line).
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["/bin/registrator", "healthcheck"]
ENTRYPOINT ["/bin/registrator"]
