/* The kernel's side of the veth scripts' comparisons: a server on the kernel's own TCP stack,
 * in C so that it pays no interpreter.
 *
 *   kernel-server echo ADDRESS PORT   one connection at a time, TCP_NODELAY, sends back what it
 *                                     receives (blocking recv and send)
 *   kernel-server sink ADDRESS PORT   a thread per connection, reads everything and drops it
 *
 * ADDRESS is an IPv4 or IPv6 literal. Built by the scripts with `cc -O2 -pthread`. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A listening socket on ADDRESS:PORT, or -1. */
static int listen_on(const char *address, const char *port) {
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    socklen_t len;
    int family = strchr(address, ':') ? AF_INET6 : AF_INET;
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&addr;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(atoi(port));
        if (inet_pton(AF_INET6, address, &a->sin6_addr) != 1) return -1;
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&addr;
        a->sin_family = AF_INET;
        a->sin_port = htons(atoi(port));
        if (inet_pton(AF_INET, address, &a->sin_addr) != 1) return -1;
        len = sizeof *a;
    }
    int one = 1, ls = socket(family, SOCK_STREAM, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(ls, (struct sockaddr *)&addr, len) != 0 || listen(ls, 64) != 0) {
        perror("kernel-server: bind/listen");
        return -1;
    }
    return ls;
}

static void echo(int c) {
    static char buf[1 << 16];
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ssize_t n;
    while ((n = recv(c, buf, sizeof buf, 0)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = send(c, buf + off, n - off, 0);
            if (w <= 0) return;
            off += w;
        }
    }
}

static void *drain(void *arg) {
    int c = (int)(intptr_t)arg;
    static __thread char buf[1 << 16];
    while (recv(c, buf, sizeof buf, 0) > 0) {}
    close(c);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "echo") && strcmp(argv[1], "sink"))) {
        fprintf(stderr, "usage: kernel-server echo|sink ADDRESS PORT\n");
        return 2;
    }
    int ls = listen_on(argv[2], argv[3]);
    if (ls < 0) return 1;
    int sink = strcmp(argv[1], "sink") == 0;
    for (;;) {
        int c = accept(ls, NULL, NULL);
        if (c < 0) continue;
        if (!sink) {
            echo(c);
            close(c);
            continue;
        }
        pthread_t t;
        if (pthread_create(&t, NULL, drain, (void *)(intptr_t)c) == 0) {
            pthread_detach(t);
        } else {
            close(c);
        }
    }
}
