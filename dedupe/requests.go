package dedupe

import (
	"context"
	"fmt"
)

// Requests makes a citizen's change and cancellation take effect when the
// submission they name is decided (postgres.RequestStore). A citizen may
// change or cancel with the receipt of a 202 while the submission is still
// on its way: intake records the request, and dedupe, once it has
// committed the decisions of a batch, hands their receipts to Resolve,
// which applies what was asked for them. Dedupe's own decision is
// unchanged (a cancelled submission is still decided registered,
// duplicate, held or rejected: invariant 1); what the citizen sees and
// what allocation does follow the cancellation.
type Requests interface {
	// Resolve applies the pending requests of the receipts that are now
	// decided; idempotent, and cheap when none of them has one.
	Resolve(ctx context.Context, receipts []string) error
}

// honourRequests resolves the requests of a committed batch, before its
// messages are acknowledged: if it fails, the messages are delivered
// again, their decisions are replays (no-ops), and resolving runs again.
func (w *Worker) honourRequests(ctx context.Context, items []*item) error {
	if w.cfg.Requests == nil {
		return nil
	}
	receipts := make([]string, 0, len(items))
	for _, it := range items {
		if !it.wait && it.o.Receipt != "" {
			receipts = append(receipts, it.o.Receipt)
		}
	}
	if err := w.cfg.Requests.Resolve(ctx, receipts); err != nil {
		return fmt.Errorf("dedupe: resolve change and cancel requests: %w", err)
	}
	return nil
}
