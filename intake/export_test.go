package intake

// DecodeFastForTest reports whether the fast decoder accepts data.
func DecodeFastForTest(data []byte) bool {
	_, ok := decodeFast(data)
	return ok
}
