package cli

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// minShortID is the fewest digits a shortened node id keeps.
const minShortID = 4

// nodeNames shortens node ids for tables, where a 19-digit id in every
// replica of every row made `ranges` rows about 200 characters wide. Each
// id is shown as "n" and its last digits: the fewest (at least
// minShortID) that tell apart every id of the table. Ids of at most that
// many digits are shown whole. JSON output keeps whole ids (as strings,
// see the views).
type nodeNames struct {
	digits int
	ids    []uint64
}

// newNodeNames returns the names of ids (duplicates and 0 ignored).
func newNodeNames(ids ...uint64) nodeNames {
	var uniq []uint64
	for _, id := range ids {
		if id != 0 && !slices.Contains(uniq, id) {
			uniq = append(uniq, id)
		}
	}
	slices.Sort(uniq)
	n := nodeNames{digits: minShortID, ids: uniq}
	for ; n.digits < 20; n.digits++ {
		seen := map[string]bool{}
		clash := false
		for _, id := range uniq {
			s := n.suffix(id)
			if seen[s] {
				clash = true
				break
			}
			seen[s] = true
		}
		if !clash {
			break
		}
	}
	return n
}

func (n nodeNames) suffix(id uint64) string {
	s := strconv.FormatUint(id, 10)
	if len(s) > n.digits {
		s = s[len(s)-n.digits:]
	}
	return s
}

// name returns id's short name, e.g. "n4821".
func (n nodeNames) name(id uint64) string { return "n" + n.suffix(id) }

// shortened reports whether some id is shown shortened.
func (n nodeNames) shortened() bool {
	for _, id := range n.ids {
		if len(strconv.FormatUint(id, 10)) > n.digits {
			return true
		}
	}
	return false
}

// legend is the line that maps the short names back to whole ids ("" when
// nothing is shortened), e.g. "nodes: n4821 = 8154362541117094821, ...".
func (n nodeNames) legend() string {
	if !n.shortened() {
		return ""
	}
	parts := make([]string, len(n.ids))
	for i, id := range n.ids {
		parts[i] = fmt.Sprintf("%s = %d", n.name(id), id)
	}
	return "nodes: " + strings.Join(parts, ", ")
}
