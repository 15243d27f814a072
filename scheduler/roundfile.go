package scheduler

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// RoundFileName is the name of a round's file in a publication directory.
func RoundFileName(campaignID, window string) string {
	return "lottery-" + campaignID + "-" + window + ".json"
}

// WriteRoundFile writes a round file into dir (created if missing) and
// returns its path. The file is written beside and renamed into place, so
// that a reader never sees half of it.
func WriteRoundFile(dir string, f *RoundFile) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("write round file: %w", err)
	}
	path := filepath.Join(dir, RoundFileName(f.Campaign, f.Window))
	body, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return "", fmt.Errorf("write round file: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(body, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("write round file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write round file: %w", err)
	}
	return path, nil
}

// ReadRoundFile reads the round file of a campaign's window from dir, and
// checks that it is that round's.
func ReadRoundFile(dir, campaignID, window string) (*RoundFile, error) {
	path := filepath.Join(dir, RoundFileName(campaignID, window))
	body, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read round file: %w", err)
	}
	var f RoundFile
	if err := json.Unmarshal(body, &f); err != nil {
		return nil, fmt.Errorf("read round file %s: %w", path, err)
	}
	if f.Campaign != campaignID || f.Window != window {
		return nil, fmt.Errorf("read round file %s: it is the round of %s/%s, not %s/%s", path, f.Campaign, f.Window, campaignID, window)
	}
	return &f, nil
}
