package scheduler_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/scheduler"
)

// The canonical encoding is spelled out here, byte for byte: a published
// input hash must never change with the code that computes it.
func TestInputEncoding(t *testing.T) {
	t.Parallel()
	entries := []scheduler.InputEntry{
		{ID: 7, Region: "11110"},
		{ID: 12, Region: "11140", Clinic: "c-11140-001"},
		{ID: 130, Region: "26350", Earliest: "2021-08-27"},
		{ID: 9000000001, Region: "50110", Clinic: "c-50110-002", Earliest: "2021-09-01"},
	}
	const want = "7\t11110\t\t\n" +
		"12\t11140\tc-11140-001\t\n" +
		"130\t26350\t\t2021-08-27\n" +
		"9000000001\t50110\tc-50110-002\t2021-09-01\n"
	enc, err := scheduler.EncodeInput(entries)
	require.NoError(t, err)
	require.Equal(t, want, string(enc))
	sum := sha256.Sum256([]byte(want))
	hash, err := scheduler.InputHash(entries)
	require.NoError(t, err)
	require.Equal(t, hex.EncodeToString(sum[:]), hash)

	h := scheduler.NewInputHasher()
	for _, e := range entries {
		require.NoError(t, h.Add(e))
	}
	require.Equal(t, hash, h.Sum(), "hashed one entry at a time")
	empty, err := scheduler.InputHash(nil)
	require.NoError(t, err)
	require.Equal(t, empty, scheduler.NewInputHasher().Sum())

	refused := []struct {
		name    string
		entries []scheduler.InputEntry
	}{
		{"ids not ascending", []scheduler.InputEntry{{ID: 2, Region: "11110"}, {ID: 1, Region: "11110"}}},
		{"an id twice", []scheduler.InputEntry{{ID: 2, Region: "11110"}, {ID: 2, Region: "11110"}}},
		{"a tab in a field", []scheduler.InputEntry{{ID: 1, Region: "11\t110"}}},
		{"a line feed in a field", []scheduler.InputEntry{{ID: 1, Region: "11110", Clinic: "c\n1"}}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			_, err := scheduler.EncodeInput(tc.entries)
			require.Error(t, err)
			_, err = scheduler.InputHash(tc.entries)
			require.Error(t, err)
			h := scheduler.NewInputHasher()
			for _, e := range tc.entries {
				err = h.Add(e)
			}
			require.Error(t, err, "the hasher refuses what EncodeInput refuses")
		})
	}
}
