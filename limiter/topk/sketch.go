package topk

import (
	"math"
	"math/bits"
)

// Registers is the number of registers of a Sketch (Redis's HLL_REGISTERS).
const Registers = 1 << sketchP

const (
	sketchP = 14
	sketchQ = 64 - sketchP
	// DenseSize is the length of a Sketch in Redis's dense encoding: a
	// 16-byte header and 6 bits per register.
	DenseSize = 16 + (Registers*6+7)/8
)

// Sketch is a HyperLogLog of distinct keys with Redis's parameters (2^14
// registers, standard error 0.81%) and Redis's hash, so that its registers
// are those PFADD would set: AppendDense writes it in the encoding that
// Redis's PFCOUNT and PFMERGE read. The zero value is empty. A Sketch is not
// safe for concurrent use.
type Sketch struct {
	reg [Registers]uint8
}

// Add counts the key whose Hash is h.
func (s *Sketch) Add(h uint64) {
	i := h & (Registers - 1)
	if n := rank(h); n > s.reg[i] {
		s.reg[i] = n
	}
}

// rank is the value that h sets its register to at least.
func rank(h uint64) uint8 { return uint8(bits.TrailingZeros64(h>>sketchP|1<<sketchQ)) + 1 }

// part is one stripe's share of a Sketch, when keys are split among n
// stripes (a power of two, at most Registers) by the low bits of their
// hash: stripe i counts only keys whose register index is i modulo n, so
// it holds every n-th register, Registers/n bytes.
type part []uint8

func newPart(n int) part { return make(part, Registers/n) }

// add counts the key whose hash is h in p, a part of one of n stripes.
func (p part) add(h uint64, n int) {
	i := (h & (Registers - 1)) >> bits.TrailingZeros(uint(n))
	if r := rank(h); r > p[i] {
		p[i] = r
	}
}

// mergePart adds every key counted by p, the part of stripe i of n.
func (s *Sketch) mergePart(p part, i, n int) {
	for j, v := range p {
		if v > s.reg[j*n+i] {
			s.reg[j*n+i] = v
		}
	}
}

// Merge adds every key counted by o.
func (s *Sketch) Merge(o *Sketch) {
	for i, v := range o.reg {
		if v > s.reg[i] {
			s.reg[i] = v
		}
	}
}

// Reset empties s.
func (s *Sketch) Reset() { clear(s.reg[:]) }

// Count estimates the number of distinct keys counted, with the estimator
// Redis uses (Ertl, "New cardinality estimation algorithms for HyperLogLog
// sketches", 2017).
func (s *Sketch) Count() int64 {
	var histo [sketchQ + 2]int
	for _, v := range s.reg {
		histo[v]++
	}
	m := float64(Registers)
	z := m * tau((m-float64(histo[sketchQ+1]))/m)
	for j := sketchQ; j >= 1; j-- {
		z += float64(histo[j])
		z *= 0.5
	}
	z += m * sigma(float64(histo[0])/m)
	return int64(math.Round(0.5 / math.Ln2 * m * m / z))
}

func sigma(x float64) float64 {
	if x == 1 {
		return math.Inf(1)
	}
	y, z := 1.0, x
	for {
		x *= x
		prev := z
		z += x * y
		y += y
		if prev == z {
			return z
		}
	}
}

func tau(x float64) float64 {
	if x == 0 || x == 1 {
		return 0
	}
	y, z := 1.0, 1-x
	for {
		x = math.Sqrt(x)
		prev := z
		y *= 0.5
		z -= (1 - x) * (1 - x) * y
		if prev == z {
			return z / 3
		}
	}
}

// AppendDense appends s in Redis's dense HLL encoding ("HYLL", encoding 0,
// a cardinality cache marked stale, then 6-bit registers, least significant
// bits first), which SET can store for PFCOUNT and PFMERGE to read.
func (s *Sketch) AppendDense(b []byte) []byte {
	b = append(b, 'H', 'Y', 'L', 'L', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80)
	start := len(b)
	b = append(b, make([]byte, DenseSize-16)...)
	regs := b[start:]
	for i, v := range s.reg {
		bit := i * 6
		byteIx, shift := bit/8, uint(bit%8)
		regs[byteIx] |= v << shift
		if shift > 2 {
			regs[byteIx+1] |= v >> (8 - shift)
		}
	}
	return b
}

// ReadDense sets s from Redis's dense encoding, as AppendDense writes it
// and as GET returns a dense HLL. It reports false for anything else.
func (s *Sketch) ReadDense(b []byte) bool {
	if len(b) != DenseSize || string(b[:4]) != "HYLL" || b[4] != 0 {
		return false
	}
	regs := b[16:]
	for i := range s.reg {
		bit := i * 6
		byteIx, shift := bit/8, uint(bit%8)
		v := regs[byteIx] >> shift
		if shift > 2 {
			v |= regs[byteIx+1] << (8 - shift)
		}
		s.reg[i] = v & 63
	}
	return true
}
