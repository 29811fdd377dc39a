package output

import (
	"errors"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
)

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		want    string
		wantErr bool
	}{
		{nil, Table, false},
		{[]string{"-o", "json"}, JSON, false},
		{[]string{"--output", "yaml"}, "", true},
	} {
		var got string
		var err error
		app := &cli.App{Flags: []cli.Flag{Flag()}, Action: func(c *cli.Context) error {
			got, err = Format(c)
			return nil
		}}
		if rerr := app.Run(append([]string{"x"}, tt.args...)); rerr != nil {
			t.Fatal(rerr)
		}
		var fe *config.FlagError
		if got != tt.want || tt.wantErr != errors.As(err, &fe) {
			t.Errorf("%q: %q, %v; want %q (flag error %v)", tt.args, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestTableAndJSON(t *testing.T) {
	var b strings.Builder
	tw := NewTable(&b, "NAME", "VALUE")
	tw.Row("a", "1")
	tw.Row("longer", "2")
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := "NAME    VALUE\na       1\nlonger  2\n"; b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := PrintJSON(&b, map[string]int{"a": 1}); err != nil || b.String() != "{\n  \"a\": 1\n}\n" {
		t.Errorf("json %q, %v", b.String(), err)
	}
}
