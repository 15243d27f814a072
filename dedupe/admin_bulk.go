package dedupe

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"

	"github.com/prereg/prereg/httpapi"
)

// MaxBulkReview bounds the held decisions one bulk review acts on.
const MaxBulkReview = 1000

// bulkReview is the body of POST /admin/v1/held/review.
type bulkReview struct {
	Campaign string   `json:"campaign"`
	Review   string   `json:"review"` // released or rejected
	Receipts []string `json:"receipts"`
	// Count repeats len(Receipts): the audit log records it, and a body
	// whose list was cut on the way is refused.
	Count int `json:"count"`
}

// BulkResult is one held decision's outcome in a bulk review: the review's
// result, or the error code that refused it (not_found, conflict for one
// already reviewed).
type BulkResult struct {
	ReviewResult
	Error string `json:"error,omitempty"`
}

// ServeBulkReview answers POST /admin/v1/held/review {campaign, review,
// receipts, count}: releases or rejects each held decision in turn, as
// the one-by-one routes do, and answers 200 with each one's outcome. The
// campaign names the batch in the audit log. Each review is its own
// transaction: one refused does not undo the others.
func (a *Admin) ServeBulkReview(w http.ResponseWriter, r *http.Request) {
	var body bulkReview
	dec := json.NewDecoder(io.LimitReader(r.Body, 256<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": map[string]string{"body": "want JSON {campaign, review, receipts, count}"}})
		return
	}
	fields := map[string]string{}
	if body.Campaign == "" {
		fields["campaign"] = "required"
	}
	if body.Review != ReviewReleased && body.Review != ReviewRejected {
		fields["review"] = "want released or rejected"
	}
	if len(body.Receipts) == 0 || len(body.Receipts) > MaxBulkReview {
		fields["receipts"] = "want 1 to 1000 receipts"
	}
	if body.Count != len(body.Receipts) {
		fields["count"] = "want the number of receipts"
	}
	if len(fields) > 0 {
		httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": fields})
		return
	}
	results := make([]BulkResult, 0, len(body.Receipts))
	done := 0
	for _, receipt := range body.Receipts {
		res, err := a.Store.ReviewHeld(r.Context(), receipt, body.Review, a.Reviewer(r), a.Now())
		if err != nil {
			if r.Context().Err() != nil {
				a.fail(w, err)
				return
			}
			code := httpapi.ErrorCode(err)
			if code == httpapi.CodeInternal {
				a.Log.Error("dedupe bulk review", slog.Any("err", err))
			}
			results = append(results, BulkResult{ReviewResult: ReviewResult{Receipt: receipt}, Error: code})
			continue
		}
		done++
		results = append(results, BulkResult{ReviewResult: res})
	}
	a.Log.Info("held decisions reviewed in bulk", slog.String("review", body.Review), slog.Int("asked", len(body.Receipts)), slog.Int("done", done))
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"campaign": body.Campaign, "review": body.Review, "done": done, "results": results})
}
