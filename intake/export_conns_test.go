package intake

// MaxConnsPerAddr is the front's per-address connection cap, for tests.
const MaxConnsPerAddr = maxConnsPerAddr

// MaxConns is the front's cap on connections served at once, for tests.
const MaxConns = maxConns
