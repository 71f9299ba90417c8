package stats

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// Bucket layout: log-linear, as in HdrHistogram. Values below subCount get a
// bucket each; above that, every power-of-two range [2^e, 2^(e+1)) is split
// into subCount equal sub-buckets. A bucket's width is then at most 1/subCount
// of its lower bound, so any value is known to within 1/16 (6.25%), and the
// midpoint a percentile reports is within 1/32 of the true value. The layout
// is fixed, which makes recording an index computation and one atomic add,
// and merging histograms (across vCPUs, across registers) exact.
const (
	subBits  = 4
	subCount = 1 << subBits // sub-buckets per power of two
	// maxExp bounds the values that get their own bucket: below 2^37 ns,
	// about 137 s, far more than any exit or KVM_RUN stint should take.
	// Larger values land in the last bucket; max still records them exactly.
	maxExp     = 37
	numBuckets = (maxExp - subBits + 1) * subCount // 544
	// maxValue caps what is recorded so that sums and min+1 cannot overflow.
	maxValue = int64(1) << 62
)

// bucketOf returns the index of the bucket that holds v (v >= 0).
func bucketOf(v int64) int {
	u := uint64(v)
	if u < subCount {
		return int(u)
	}
	e := bits.Len64(u) - 1 // 2^e <= u < 2^(e+1), e >= subBits
	if e >= maxExp {
		return numBuckets - 1
	}
	// The top subBits+1 bits of u select the sub-bucket; they range over
	// [subCount, 2*subCount), which continues the index where the previous
	// power of two left off.
	return (e-subBits)*subCount + int(u>>(e-subBits))
}

// bucketLow returns the smallest value bucket i holds.
func bucketLow(i int) int64 {
	if i < 2*subCount {
		return int64(i)
	}
	shift := i/subCount - 1
	return int64(i%subCount+subCount) << shift
}

// bucketWidth returns how many values bucket i holds.
func bucketWidth(i int) int64 {
	if i < 2*subCount {
		return 1
	}
	return 1 << (i/subCount - 1)
}

// histogram is a latency histogram in nanoseconds with a single writer and
// any number of concurrent readers. The writer is a vCPU thread; readers
// snapshot it without stopping the writer, so every field is atomic. A
// snapshot is not an instant: a record that races with it may show in the
// buckets and not yet in the sum, which is harmless for statistics.
type histogram struct {
	counts [numBuckets]atomic.Uint64
	sum    atomic.Int64
	// minP1 is the minimum plus one, so that the zero value means "none
	// yet" and a histogram needs no initialisation.
	minP1 atomic.Int64
	max   atomic.Int64
}

// record adds one value. Only the owning vCPU thread may call it; min and max
// are read-then-written, which is correct only with a single writer (and
// saves two compare-and-swap loops per exit).
func (h *histogram) record(v int64) {
	if v < 0 {
		v = 0 // a clock step backwards; count it rather than lose it
	} else if v > maxValue {
		v = maxValue
	}
	h.counts[bucketOf(v)].Add(1)
	h.sum.Add(v)
	if m := h.minP1.Load(); m == 0 || v < m-1 {
		h.minP1.Store(v + 1)
	}
	if v > h.max.Load() {
		h.max.Store(v)
	}
}

// histSnap is a copy of one or more histograms, merged, for computing
// percentiles off the writer's cache lines.
type histSnap struct {
	counts [numBuckets]uint64
	count  uint64
	sum    int64
	min    int64
	max    int64
}

// addLive merges the current contents of the live histogram h into s.
func (s *histSnap) addLive(h *histogram) {
	var n uint64
	first, last := -1, -1
	for i := range h.counts {
		if c := h.counts[i].Load(); c != 0 {
			s.counts[i] += c
			n += c
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if n == 0 {
		return
	}
	// min and max are stored after the bucket count, so a snapshot racing
	// with a record can see the count and a stale bound; the buckets then
	// bound the true value instead.
	lo, hi := h.minP1.Load()-1, h.max.Load()
	if lo < 0 || lo >= bucketLow(first)+bucketWidth(first) {
		lo = bucketLow(first)
	}
	if hi < bucketLow(last) {
		hi = bucketLow(last)
	}
	s.merge(n, h.sum.Load(), lo, hi)
}

// add merges another snapshot into s.
func (s *histSnap) add(o *histSnap) {
	if o.count == 0 {
		return
	}
	for i, c := range o.counts {
		s.counts[i] += c
	}
	s.merge(o.count, o.sum, o.min, o.max)
}

func (s *histSnap) merge(n uint64, sum, lo, hi int64) {
	if s.count == 0 || lo < s.min {
		s.min = lo
	}
	if hi > s.max {
		s.max = hi
	}
	s.count += n
	s.sum += sum
}

// percentile returns an estimate of the q-quantile (0 < q <= 1) by nearest
// rank: the midpoint of the bucket holding the ceil(q*count)-th smallest
// value, clamped to [min, max] to keep estimates inside the observed range.
// The largest rank is the max, exactly.
func (s *histSnap) percentile(q float64) int64 {
	if s.count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(s.count)))
	rank = max(rank, 1)
	if rank >= s.count {
		return s.max // exact, even beyond the last bucket
	}
	var seen uint64
	for i, c := range s.counts {
		seen += c
		if seen >= rank {
			v := bucketLow(i) + bucketWidth(i)/2
			return min(max(v, s.min), s.max)
		}
	}
	return s.max // unreachable while counts sum to count
}

// summary condenses s into the figures a report shows.
func (s *histSnap) summary() Summary {
	if s.count == 0 {
		return Summary{}
	}
	return Summary{
		Count:   s.count,
		TotalNs: s.sum,
		MeanNs:  s.sum / int64(s.count),
		MinNs:   s.min,
		P50Ns:   s.percentile(0.50),
		P90Ns:   s.percentile(0.90),
		P99Ns:   s.percentile(0.99),
		MaxNs:   s.max,
	}
}
