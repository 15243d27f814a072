// Package scheduler is prereg's batch allocation stage: an operator runs it
// for one window of a campaign (a dry run first, then for real) and it gives
// each registration without an appointment a slot, or leaves it unassigned
// with a reason so that it rolls into the next round.
//
// # Order
//
// The registrations of a run are ordered by its policy: PolicyLottery (the
// default) sorts them by SHA-256(seed ‖ registration id as 8 big-endian
// bytes) (DrawOrder), where the seed is a random value committed — its
// SHA-256 hash published — when the window opens, and revealed with the
// result; PolicyFCFS sorts them by the arrival of their first submission.
// Dry runs use the committed seed too, so no one can try seeds until one
// suits them.
//
// # Rounds
//
// When the window closes, its draw input is frozen: the registrations a
// run would select then, and the SHA-256 of their canonical encoding
// (EncodeInput), published before the seed is revealed. Every run of the
// window draws over that list; registrations added later go to the next
// round. RoundClock does both on the clock (AdvanceRounds), PublishRound
// assembles a round's public file, and VerifyRound recomputes it from the
// file alone with DrawOrder and Plan (docs/ALLOCATION.md).
//
// # Assignment
//
// In that order, each registration gets the earliest slot (day, then band)
// on or after its earliest date: at its preferred clinic if that has room,
// else at another clinic of its region, else in the nearest region with
// room (great-circle distance between the regions' clinic centroids).
// Whoever finds no room stays unassigned with a Reason.
//
// # Safety
//
// The plan is computed in memory from one consistent snapshot and written in
// chunks, each chunk one transaction holding its appointments, their outbox
// rows and the slots' used counters; the schema refuses over-booking and a
// second appointment per registration whatever the allocator does. One
// allocation per campaign runs at a time (a PostgreSQL advisory lock: the
// windows of a campaign share its slots). A run that dies (SIGKILL, lost
// connection) leaves its row "running"; the next run of the campaign
// resumes it: it rebuilds the snapshot as it was when the run started (the
// registrations up to the run's bound, the slots' use minus the run's own
// appointments), recomputes the same plan, and writes the chunks that are
// missing, so the result equals that of an uninterrupted run.
package scheduler
