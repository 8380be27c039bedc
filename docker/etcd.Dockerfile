# etcd from Debian's etcd-server package, with the two glibc files it links against.
# Built by docker/build-images.sh; any etcd 3.4+ image can be used instead. Runs as root (its data
# directory is created at start).
FROM scratch
COPY lib/ld-linux-x86-64.so.2 /lib64/ld-linux-x86-64.so.2
COPY lib/libc.so.6 /lib/x86_64-linux-gnu/libc.so.6
COPY etcd etcdctl /usr/bin/
ENV ETCD_DATA_DIR=/var/lib/etcd
HEALTHCHECK --interval=5s --timeout=5s --retries=10 CMD ["/usr/bin/etcdctl", "endpoint", "health"]
ENTRYPOINT ["/usr/bin/etcd"]
