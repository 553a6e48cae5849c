package dirty

// Kernel ABI that golang.org/x/sys/unix v0.49 does not define. Values are
// from the kernel's uapi headers, named as there.

// include/uapi/linux/userfaultfd.h
const (
	uffdAPI          = 0xAA // UFFD_API
	uffdUserModeOnly = 1    // UFFD_USER_MODE_ONLY, a userfaultfd(2) flag

	// UFFD_FEATURE_* bits of struct uffdio_api.features.
	uffdFeatureEventFork     = 1 << 1  // UFFD_FEATURE_EVENT_FORK
	uffdFeatureWPUnpopulated = 1 << 13 // UFFD_FEATURE_WP_UNPOPULATED (6.4)
	uffdFeatureWPAsync       = 1 << 15 // UFFD_FEATURE_WP_ASYNC (6.7)

	uffdioRegisterModeWP = 1 << 1 // UFFDIO_REGISTER_MODE_WP

	// ioctl numbers: _IOWR(UFFDIO=0xAA, nr, struct) and _IOR for UNREGISTER.
	uffdioAPI        = 0xC018AA3F // UFFDIO_API, struct uffdio_api (24 bytes)
	uffdioRegister   = 0xC020AA00 // UFFDIO_REGISTER, struct uffdio_register (32 bytes)
	uffdioUnregister = 0x8010AA01 // UFFDIO_UNREGISTER, struct uffdio_range (16 bytes)

	// Sizes of the structs above as the injected ioctls lay them out.
	sizeofUffdioAPI      = 24 // struct uffdio_api { u64 api, features, ioctls; }
	sizeofUffdioRegister = 32 // struct uffdio_register { struct uffdio_range { u64 start, len; } range; u64 mode, ioctls; }
)
