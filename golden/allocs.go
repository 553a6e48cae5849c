package golden

import "runtime/metrics"

// AllocsOf returns the bytes f allocated on the heap, for the fuzz targets'
// bound on what one hostile input may allocate. runtime/metrics is read
// without stopping the world, unlike runtime.ReadMemStats.
func AllocsOf(f func()) uint64 {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	before := sample[0].Value.Uint64()
	f()
	metrics.Read(sample)
	return sample[0].Value.Uint64() - before
}
