package deadletter

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncateKeepsValidUTF8(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abcdef", 3, "abc"},
		{"ab한", 4, "ab"}, // a rune cut in half is dropped
		{"a\xffb", 5, "ab"},
	} {
		got := truncate(tc.in, tc.n)
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
	if got := truncate(strings.Repeat("x", 600), maxDetail); len(got) != maxDetail {
		t.Errorf("len = %d, want %d", len(got), maxDetail)
	}
}
