#ifndef CLIBPQ_SHIM_H
#define CLIBPQ_SHIM_H
#include <libpq-fe.h>

#ifdef __linux__
// For the Postgres module's socket waiter (non-blocking libpq I/O); Glibc's Swift module
// does not export epoll.
#include <sys/epoll.h>
#endif

#endif
