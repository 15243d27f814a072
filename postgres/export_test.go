package postgres

// MigrateFiles and ReadMigrations let the tests migrate with texts other
// than the embedded ones: an edited file, or the texts that shipped first.
var (
	MigrateFiles   = migrate
	ReadMigrations = readMigrations
)
