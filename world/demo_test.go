package world_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/world"
)

// The demo on a small surge at several seeds: every invariant holds and
// dedupe matches the synthetic truth exactly. The last runs with every
// write fsync'd and intake's group commit, so that intents stored in
// atomic batches go through the whole pipeline too.
func TestDemoSmallSurgeMatchesTruth(t *testing.T) {
	srv := pgtest.Server(t)
	for _, run := range []struct {
		seed int64
		sync bool
	}{{1, false}, {2, false}, {3, false}, {4, true}} {
		t.Run(fmt.Sprintf("seed %d sync-always %v", run.seed, run.sync), func(t *testing.T) {
			cfg, err := config.FromEnv(func(string) string { return "" }, false)
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			sum, err := world.Demo(ctx, world.DemoOptions{
				Config: cfg, DatabaseURL: srv.URL, Submissions: 3000, Seed: run.seed, Connections: 16, SyncAlways: run.sync,
			})
			require.NoError(t, err)
			require.True(t, sum.InvariantOK, "violations: %v; truth examples: %v", sum.Violations, sum.TruthExamples)
			require.Equal(t, 3000, sum.Submitted)
			require.Equal(t, 1.0, sum.DedupePrecision)
			require.Equal(t, 1.0, sum.DedupeRecall)
			require.Equal(t, sum.Persons, sum.PersonsRegistered)
			require.Equal(t, sum.Persons, sum.Decisions.Registered, "one registration per person")
			require.Equal(t, sum.Accepted, sum.Decisions.Registered+sum.Decisions.Duplicate+sum.Decisions.Held+sum.Decisions.Rejected)
			require.Zero(t, sum.TruthMismatches)
			require.Equal(t, sum.Appointments, sum.SMSDelivered, "one SMS per appointment, counted at the handsets")
			require.Zero(t, sum.SMSDuplicates)
			// The caches spare the provider: fewer calls than accepted
			// submissions, and well under Korea's 2.5 per person. (Every
			// person, window jump and forged token needs a call, and so
			// does a new token from another device: see verify/doc.go.)
			require.Less(t, sum.IDPCalls, int64(sum.Accepted))
			require.Less(t, sum.IDPCallsPerPerson, 2.0)
			if run.sync {
				require.NotNil(t, sum.GroupCommit)
				require.GreaterOrEqual(t, sum.GroupCommit.Intents, int64(sum.Statuses["202"]), "every 202 went through group commit")
				require.Less(t, sum.GroupCommit.Publishes, sum.GroupCommit.Intents, "intents shared batches")
			} else {
				require.Nil(t, sum.GroupCommit)
			}
		})
	}
}
