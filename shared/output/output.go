// Package output is how Pleiades commands print results: a table for
// people by default, JSON with --output json. The pleiades CLI and the
// benchmark commands of the daemon modules (stored-bench, gossipd-bench)
// print through it, so every command has the same --output flag, the
// same table layout and the same JSON indentation.
package output

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
)

// FlagName is the name of the output flag.
const FlagName = "output"

// The output formats.
const (
	Table = "table"
	JSON  = "json"
)

// Flag is the --output (-o) flag: table (default) or json.
func Flag() cli.Flag {
	return &cli.StringFlag{Name: FlagName, Aliases: []string{"o"}, Value: Table, Usage: "output format: table or json"}
}

// Format reads and checks --output; a bad value is a *config.FlagError.
func Format(c *cli.Context) (string, error) {
	switch f := c.String(FlagName); f {
	case Table, JSON:
		return f, nil
	default:
		return "", &config.FlagError{Flag: FlagName, Value: f, Err: errors.New("want table or json")}
	}
}

// PrintJSON writes v as indented JSON.
func PrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// TableWriter writes aligned columns: a header, then one row per entry.
// Call Flush at the end.
type TableWriter struct {
	tw *tabwriter.Writer
}

// NewTable starts a table on w with the given column headers.
func NewTable(w io.Writer, header ...string) *TableWriter {
	t := &TableWriter{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.Row(header...)
	return t
}

// Row adds one row.
func (t *TableWriter) Row(cols ...string) {
	fmt.Fprintln(t.tw, strings.Join(cols, "\t"))
}

// Flush writes the table out.
func (t *TableWriter) Flush() error { return t.tw.Flush() }
