package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/kvclient"
)

// atFlag is kv get's --at: read as of a past timestamp.
func atFlag() cli.Flag {
	return &cli.StringFlag{Name: "at", Usage: "read as of `TS`, within the cluster's version retention window (default 4h): " +
		"an HLC timestamp as printed (SECONDS.NANOSECONDS,LOGICAL), an RFC 3339 time, or a duration ago (-5m)"}
}

// parseAt reads an --at value: an HLC timestamp in its printed form, an
// RFC 3339 time, or a negative duration before now. A wall time reads
// every write of that nanosecond (the highest logical).
func parseAt(s string, now time.Time) (hlc.Timestamp, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return hlc.Timestamp{}, errors.New("empty timestamp")
	case strings.HasPrefix(s, "-"):
		d, err := time.ParseDuration(s)
		if err != nil {
			return hlc.Timestamp{}, fmt.Errorf("not a duration ago: %w", err)
		}
		return wallTS(now.Add(d))
	case strings.Contains(s, ","):
		return hlc.Parse(s)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return hlc.Timestamp{}, errors.New("want SECONDS.NANOSECONDS,LOGICAL, an RFC 3339 time or a duration ago such as -5m")
	}
	return wallTS(t)
}

func wallTS(t time.Time) (hlc.Timestamp, error) {
	if t.UnixNano() <= 0 {
		return hlc.Timestamp{}, fmt.Errorf("%v is before 1970", t)
	}
	return hlc.Timestamp{WallTime: t.UnixNano(), Logical: 1<<31 - 1}, nil
}

// maxStalenessFlag is --max-staleness of kv get and scan.
func maxStalenessFlag() cli.Flag {
	return &cli.DurationFlag{Name: "max-staleness", Usage: "bounded-staleness read: served by the nearest node's replica (leader or not) " +
		"at its closed timestamp when at most `DURATION` old (the cluster closes timestamps about 3s behind now), exactly as the data was then; " +
		"otherwise by the leader. The timestamp read at is printed"}
}

// maxStaleness reads and checks --max-staleness (0: not set) against the
// read consistency.
func maxStaleness(c *cli.Context, cons kvclient.Consistency) (time.Duration, error) {
	d := c.Duration("max-staleness")
	if !c.IsSet("max-staleness") {
		return 0, nil
	}
	switch {
	case d <= 0:
		return 0, config.Usagef("invalid value %v for flag --max-staleness: want a positive duration", d)
	case d > kvclient.MaxStalenessLimit:
		return 0, config.Usagef("invalid value %v for flag --max-staleness: want at most %v", d, kvclient.MaxStalenessLimit)
	case cons == kvclient.Stale:
		return 0, config.Usagef("--max-staleness and --consistency stale are exclusive: a bounded-staleness read replaces a stale one")
	}
	return d, nil
}
