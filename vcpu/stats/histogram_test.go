package stats

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBucketOf(t *testing.T) {
	for _, tc := range []struct {
		v         int64
		bucket    int
		low, high int64 // the bucket's range, inclusive
	}{
		{0, 0, 0, 0},
		{1, 1, 1, 1},
		{15, 15, 15, 15},
		{16, 16, 16, 16},
		{31, 31, 31, 31},
		{32, 32, 32, 33},
		{33, 32, 32, 33},
		{34, 33, 34, 35},
		{63, 47, 62, 63},
		{64, 48, 64, 67},
		{1000, 111, 992, 1023},
		{1 << 20, (20-subBits)*subCount + subCount, 1 << 20, 1<<20 + 1<<16 - 1},
		{1<<maxExp - 1, numBuckets - 1, 31 << 32, 1<<maxExp - 1},
		{1 << maxExp, numBuckets - 1, 31 << 32, 1<<maxExp - 1}, // clamped
		{maxValue, numBuckets - 1, 31 << 32, 1<<maxExp - 1},
	} {
		i := bucketOf(tc.v)
		assert.Equal(t, tc.bucket, i, "bucketOf(%d)", tc.v)
		assert.Equal(t, tc.low, bucketLow(i), "low of %d", i)
		assert.Equal(t, tc.high, bucketLow(i)+bucketWidth(i)-1, "high of %d", i)
	}
}

// TestBucketLayout checks every bucket: the buckets tile [0, 2^maxExp)
// without gaps or overlaps, each maps back to itself, and each is narrow
// enough for the 1/16 relative resolution the reports promise.
func TestBucketLayout(t *testing.T) {
	var next int64
	for i := range numBuckets {
		low, w := bucketLow(i), bucketWidth(i)
		require.Equal(t, next, low, "bucket %d starts where %d ends", i, i-1)
		require.Equal(t, i, bucketOf(low), "low end of bucket %d", i)
		require.Equal(t, i, bucketOf(low+w-1), "high end of bucket %d", i)
		if low >= subCount {
			require.LessOrEqual(t, w*subCount, low, "bucket %d too wide", i)
		}
		next = low + w
	}
	assert.Equal(t, int64(1)<<maxExp, next, "buckets cover 1 ns to 2^37 ns (137 s)")
}

func TestHistogramExactFields(t *testing.T) {
	var h histogram
	for _, v := range []int64{-5, 0, 7, 1000, 3, 1 << 40} {
		h.record(v)
	}
	var s histSnap
	s.addLive(&h)
	sum := s.summary()
	assert.Equal(t, uint64(6), sum.Count)
	assert.Equal(t, int64(0), sum.MinNs, "negative values count as 0")
	assert.Equal(t, int64(1<<40), sum.MaxNs, "max is exact beyond the last bucket")
	assert.Equal(t, int64(0+0+7+1000+3+1<<40), sum.TotalNs)
	assert.Equal(t, sum.TotalNs/6, sum.MeanNs)
	assert.Equal(t, int64(1<<40), s.percentile(1), "p100 is the max")

	assert.Equal(t, Summary{}, (&histSnap{}).summary(), "empty histogram")
}

func TestPercentileSmallValuesExact(t *testing.T) {
	var h histogram
	for v := int64(1); v <= 20; v++ {
		h.record(v)
	}
	var s histSnap
	s.addLive(&h)
	for _, tc := range []struct {
		q    float64
		want int64
	}{{0.05, 1}, {0.5, 10}, {0.9, 18}, {0.99, 20}, {1, 20}} {
		assert.Equal(t, tc.want, s.percentile(tc.q), "q=%v", tc.q)
	}
}

// TestPercentileAccuracy compares percentiles against exact nearest-rank
// values over distributions shaped like exit latencies: each estimate must
// be within half its bucket's width (1/32 of the value) of the truth.
func TestPercentileAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		gen  func() int64
	}{
		{"log-uniform 1ns..10s", func() int64 { return int64(math.Exp(rng.Float64() * math.Log(1e10))) }},
		{"normal around 1.5µs", func() int64 { return max(0, int64(1500+300*rng.NormFloat64())) }},
		{"bimodal 800ns and 40µs", func() int64 {
			if rng.IntN(10) == 0 {
				return 40000 + rng.Int64N(5000)
			}
			return 800 + rng.Int64N(100)
		}},
		{"exponential mean 20µs", func() int64 { return int64(rng.ExpFloat64() * 20000) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h histogram
			vals := make([]int64, 50000)
			for i := range vals {
				vals[i] = tc.gen()
				h.record(vals[i])
			}
			slices.Sort(vals)
			var s histSnap
			s.addLive(&h)
			assert.Equal(t, vals[0], s.min)
			assert.Equal(t, vals[len(vals)-1], s.max)
			for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
				exact := vals[int(math.Ceil(q*float64(len(vals))))-1]
				got := s.percentile(q)
				tol := bucketWidth(bucketOf(exact)) / 2
				assert.InDelta(t, exact, got, float64(tol), "q=%v: exact %d, estimate %d", q, exact, got)
				assert.LessOrEqual(t, math.Abs(float64(got-exact)), float64(exact)/32+1, "q=%v relative error", q)
			}
		})
	}
}

func TestSnapshotMergeIsExact(t *testing.T) {
	var a, b, all histogram
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 10000 {
		v := rng.Int64N(1e7)
		all.record(v)
		if i%3 == 0 {
			a.record(v)
		} else {
			b.record(v)
		}
	}
	var sa, sb, sall histSnap
	sa.addLive(&a)
	sb.addLive(&b)
	sall.addLive(&all)
	var merged histSnap
	merged.add(&sa)
	merged.add(&sb)
	merged.add(&histSnap{})
	assert.Equal(t, sall, merged)
}
