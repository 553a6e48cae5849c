// Package uffd is the userfaultfd interface of Linux, written out once for
// the packages that use it: the uapi of include/uapi/linux/userfaultfd.h
// that golang.org/x/sys/unix does not define (constants, ioctl numbers,
// struct layouts, struct uffd_msg), and thin wrappers that open a
// userfaultfd in this process and run its ioctls on an fd of this process.
//
// The wrappers make one call each and return the errno wrapped in an
// os.SyscallError naming the call ("ioctl(UFFDIO_COPY)"); retrying, and
// what an errno means, is the caller's business. Code that injects the
// ioctls into another process (internal/dirty) uses the constants and the
// Bytes of the argument structs.
//
// Everything is Linux-only; on other platforms the package is empty.
package uffd
