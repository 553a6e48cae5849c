// Package format reads and writes ckptimg checkpoint images, version 1.
// docs/FORMAT.md is the normative specification; this is its outline.
//
// An image is one file, written front to back as a stream so that capture
// can write pages as it reads them and the output may be a pipe:
//
//	+---------------------------------------------------------------+
//	| header (32 bytes): magic "CKPTIMG\0", version, checksum       |
//	+---------------------------------------------------------------+
//	| chunk 0 || chunk 1 || ... : page data and blobs, each chunk   |
//	|   an independent zstd frame or raw bytes, at most 64 MiB of   |
//	|   plaintext, checksummed (XXH64 of the plaintext)             |
//	+---------------------------------------------------------------+
//	| page hash table: one XXH64 per stored or parent page          |
//	| chunk table: 32 bytes per chunk (offset, lengths, checksum)   |
//	| metadata: zstd frame of the Meta message                      |
//	+---------------------------------------------------------------+
//	| directory: 48 bytes per section (kind, codec, offset, lengths,|
//	|   checksum, count)                                            |
//	+---------------------------------------------------------------+
//	| trailer (64 bytes): directory offset and length, version,     |
//	|   image id (SHA-256 of the directory, first 16 bytes),        |
//	|   checksums, magic "CKPTEND\0"                                |
//	+---------------------------------------------------------------+
//
// Readers start from the trailer, so opening an image costs the same
// whatever its size: the trailer, the directory, the chunk table and the
// metadata are read and checked; pages and hashes are read on demand.
// Every length and offset is checked against the file size and the limits
// (MaxChunkSize, MaxMetadataSize, ...) before anything is allocated.
//
// The metadata (Meta and the types it holds) is encoded field by field in
// a subset of the protobuf wire format, so a newer minor version can add
// fields that an older reader skips.
package format
