// Package migrations holds the schema as plain SQL files, embedded into the
// validator binary and applied by `validator migrate` (goose format).
package migrations

import "embed"

// FS holds the *.sql migration files.
//
//go:embed *.sql
var FS embed.FS
