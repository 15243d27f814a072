package prereg_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/prereg/prereg"
)

func TestError(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("resend: %w", prereg.Conflict("version 2 is still waiting to be sent"))
	if !errors.Is(err, prereg.ErrConflict) {
		t.Fatal("a Conflict does not match prereg.ErrConflict")
	}
	if errors.Is(err, prereg.ErrNotFound) {
		t.Fatal("a Conflict matches prereg.ErrNotFound")
	}
	if got, want := err.Error(), "resend: version 2 is still waiting to be sent"; got != want {
		t.Fatalf("Error() = %q; want the context and the message, without the kind: %q", got, want)
	}
	if got, want := prereg.NotFound("unknown window").Error(), "unknown window"; got != want {
		t.Fatalf("Error() = %q; want the message %q", got, want)
	}
}
