package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"
)

// EnvPrefix starts the environment variable of every flag.
const EnvPrefix = "PLEIADES_"

// metadataKey is where the loaded file values live in cli.App.Metadata
// between the app's Before hook and those of its commands.
const metadataKey = "pleiades.config.file"

// EnvName returns the environment variable for a flag name:
// "data-dir" → "PLEIADES_DATA_DIR".
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// ConfigFlag returns the --config flag.
func ConfigFlag() cli.Flag {
	return &cli.StringFlag{Name: FlagConfig, Usage: "read flag values from a YAML or TOML `FILE` (keys are flag names)"}
}

// NewApp returns an app running action with the given flags, prepared by
// Prepare: env vars, --config and error handling that leaves the exit
// status to the caller.
func NewApp(name, usage string, flags []cli.Flag, action cli.ActionFunc) *cli.App {
	app := &cli.App{
		Name:   name,
		Usage:  usage,
		Flags:  flags,
		Action: action,
	}
	Prepare(app)
	return app
}

// Prepare makes app follow the Pleiades configuration rules: it adds
// --config (unless present), gives every flag of the app and of its
// commands the env var EnvName(flag) (unless it has env vars already),
// loads the file named by --config before any action runs (applying each
// key to the flag of the same name unless that flag was set on the command
// line or in the environment) and makes usage errors returned values
// instead of printed help, so that the caller chooses the exit status:
// an unknown command or flag, or a flag value that does not parse, is an
// error that names it as typed and says what is accepted (see Run).
//
// Call it once, after the app's flags and commands are declared. Hooks the
// app already had (Before, OnUsageError) still run after Prepare's.
func Prepare(app *cli.App) {
	if !hasFlag(app.Flags, FlagConfig) {
		app.Flags = append(app.Flags, ConfigFlag())
	}
	addEnv(app.Flags)
	known := map[string]bool{}
	collectNames(known, app.Flags, app.Commands)

	before := app.Before
	app.Before = func(c *cli.Context) error {
		values, err := loadFile(c.String(FlagConfig), known)
		if err != nil {
			return err
		}
		if c.App.Metadata == nil {
			c.App.Metadata = map[string]any{}
		}
		c.App.Metadata[metadataKey] = values
		if err := applyValues(c, app.Flags, values, c.String(FlagConfig)); err != nil {
			return err
		}
		if before != nil {
			return before(c)
		}
		return nil
	}
	app.OnUsageError = usageError(app.OnUsageError)
	app.ExitErrHandler = func(*cli.Context, error) {}
	if app.Action == nil && len(app.Commands) > 0 {
		app.Action = unknownCommand
	}
	prepareCommands(app.Commands)
}

func prepareCommands(cmds []*cli.Command) {
	for _, cmd := range cmds {
		addEnv(cmd.Flags)
		flags := cmd.Flags
		before := cmd.Before
		cmd.Before = func(c *cli.Context) error {
			if values, ok := c.App.Metadata[metadataKey].(map[string]any); ok {
				if err := applyValues(c, flags, values, c.String(FlagConfig)); err != nil {
					return err
				}
			}
			if before != nil {
				return before(c)
			}
			return nil
		}
		cmd.OnUsageError = usageError(cmd.OnUsageError)
		if cmd.Action == nil && len(cmd.Subcommands) > 0 {
			cmd.Action = unknownCommand
		}
		prepareCommands(cmd.Subcommands)
	}
}

func usageError(next cli.OnUsageErrorFunc) cli.OnUsageErrorFunc {
	return func(c *cli.Context, err error, isSubcommand bool) error {
		err = describeUsage(c, err)
		if next != nil {
			return next(c, err, isSubcommand)
		}
		return err
	}
}

func hasFlag(flags []cli.Flag, name string) bool {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

func collectNames(known map[string]bool, flags []cli.Flag, cmds []*cli.Command) {
	for _, f := range flags {
		for _, n := range f.Names() {
			known[n] = true
		}
	}
	for _, cmd := range cmds {
		collectNames(known, cmd.Flags, cmd.Subcommands)
	}
}

// addEnv sets EnvVars on every flag that has none. urfave/cli flags are
// pointers to structs with an EnvVars []string field; flags of other
// shapes are left alone.
func addEnv(flags []cli.Flag) {
	for _, f := range flags {
		v := reflect.ValueOf(f)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
			continue
		}
		ev := v.Elem().FieldByName("EnvVars")
		if !ev.IsValid() || !ev.CanSet() || ev.Type() != reflect.TypeOf([]string(nil)) || ev.Len() > 0 {
			continue
		}
		ev.Set(reflect.ValueOf([]string{EnvName(f.Names()[0])}))
	}
}

// loadFile reads path (YAML, or TOML when it ends in .toml) into a map of
// flag name to value, refusing keys that name no flag. An empty path
// yields no values.
func loadFile(path string, known map[string]bool) (map[string]any, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &FlagError{Flag: FlagConfig, Value: path, Err: err}
	}
	values := map[string]any{}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".toml":
		if _, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&values); err != nil {
			return nil, &FlagError{Flag: FlagConfig, Value: path, Err: fmt.Errorf("parse TOML: %w", err)}
		}
	default:
		if err := yaml.Unmarshal(data, &values); err != nil {
			return nil, &FlagError{Flag: FlagConfig, Value: path, Err: fmt.Errorf("parse YAML: %w", err)}
		}
	}
	var unknown []string
	for k := range values {
		if !known[k] || k == FlagConfig {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, &FlagError{Flag: FlagConfig, Value: path, Err: fmt.Errorf("unknown key(s) %s (keys are flag names)", strings.Join(unknown, ", "))}
	}
	return values, nil
}

// applyValues sets each of flags found in values unless it was set on the
// command line or in the environment.
func applyValues(c *cli.Context, flags []cli.Flag, values map[string]any, path string) error {
	for _, f := range flags {
		name := f.Names()[0]
		v, ok := values[name]
		if !ok || c.IsSet(name) {
			continue
		}
		items, err := fileStrings(v)
		if err != nil {
			return &FlagError{Flag: name, Value: fmt.Sprint(v), Err: fmt.Errorf("in %s: %w", path, err)}
		}
		for _, s := range items {
			if err := c.Set(name, s); err != nil {
				return &FlagError{Flag: name, Value: s, Err: fmt.Errorf("in %s: %w", path, unwrapFlagErr(err))}
			}
		}
	}
	return nil
}

// unwrapFlagErr strips the flag package's "invalid value ... for flag"
// decoration when present, keeping the reason.
func unwrapFlagErr(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// fileStrings renders a decoded file value as the string(s) a flag parses.
func fileStrings(v any) ([]string, error) {
	switch x := v.(type) {
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, err := fileStrings(e)
			if err != nil {
				return nil, err
			}
			out = append(out, s...)
		}
		return out, nil
	case map[string]any:
		return nil, errors.New("a table is not a flag value")
	case time.Time:
		return []string{x.Format(time.RFC3339Nano)}, nil
	case nil:
		return nil, errors.New("empty value")
	}
	return []string{fmt.Sprint(v)}, nil
}
