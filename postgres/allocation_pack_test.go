package postgres

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/scheduler"
)

// Packing registrations as a run reads them and unpacking them gives back
// exactly what was read, in order, across blocks.
func TestPackedRegistrationsRoundTrip(t *testing.T) {
	t.Parallel()
	n := 2*packedBlock + 17
	want := make([]scheduler.Registration, n)
	for i := range want {
		r := scheduler.Registration{ID: int64(3*i + 1), Region: fmt.Sprintf("%05d", 11000+i%251),
			Arrival:     time.Date(2021, 8, 9, 20, 0, 0, i*1_000_003, time.UTC).UnixNano(),
			CarriedOver: i%7 == 0, WasUnassigned: i%11 == 0, Written: i%13 == 0}
		if i%3 == 0 {
			r.Clinic = fmt.Sprintf("c-%05d", i%14000)
		}
		if i%5 == 0 {
			r.Earliest = scheduler.DateOf(time.Date(2021, 8, 26+i%9, 0, 0, 0, 0, time.UTC))
		}
		want[i] = r
	}
	var p packedRegistrations
	for i := range want {
		r := want[i] // add may keep nothing of the registration it is handed
		require.NoError(t, p.add(&r))
	}
	got := p.unpack()
	require.Equal(t, want, got)
	require.Nil(t, p.blocks, "the blocks are let go")
}
