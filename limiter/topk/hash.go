package topk

// Hash is MurmurHash64A with the seed that Redis uses for HyperLogLog
// (0xadc83b19). The same function places a key in its stripe, its sketch
// register and its Redis shard, so every process, whatever its build or
// start time, computes the same value for the same key.
func Hash(s string) uint64 {
	const m = 0xc6a4a7935bd1e995
	const r = 47
	h := uint64(0xadc83b19) ^ (uint64(len(s)) * m)
	i := 0
	for ; i+8 <= len(s); i += 8 {
		k := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		k *= m
		k ^= k >> r
		k *= m
		h ^= k
		h *= m
	}
	switch len(s) - i {
	case 7:
		h ^= uint64(s[i+6]) << 48
		fallthrough
	case 6:
		h ^= uint64(s[i+5]) << 40
		fallthrough
	case 5:
		h ^= uint64(s[i+4]) << 32
		fallthrough
	case 4:
		h ^= uint64(s[i+3]) << 24
		fallthrough
	case 3:
		h ^= uint64(s[i+2]) << 16
		fallthrough
	case 2:
		h ^= uint64(s[i+1]) << 8
		fallthrough
	case 1:
		h ^= uint64(s[i])
		h *= m
	}
	h ^= h >> r
	h *= m
	h ^= h >> r
	return h
}
