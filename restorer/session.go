package restorer

import (
	"errors"
	"time"

	"github.com/ckptimg/ckptimg/format"
)

// Session is one restore of an image: the plan, made once when the session
// is made, and what can be done with it. CheckHost and Simulate touch
// nothing; Check touches nothing but a stub process it starts and kills;
// Restore recreates the process tree.
type Session struct {
	chain *format.Chain
	opts  Options
	plan  *Plan
	// planned is how long planning took (the restore's first phase).
	planned time.Duration
}

// NewSession plans the restore of chain's top image (a delta first, then
// its parents; format.OpenChain opens one). The session plans its own copy
// of the image's metadata, changed by opts.Rewrite when set: the chain's
// metadata is never changed. It returns an error only for an image it
// cannot plan at all (or Rewrite's error, as it is); what stops the
// restore is found by the checks.
func NewSession(chain *format.Chain, opts Options) (*Session, error) {
	meta := chain.Top().CloneMeta()
	if opts.Rewrite != nil {
		if err := opts.Rewrite(meta); err != nil {
			return nil, err
		}
	}
	return newSession(chain, meta, opts)
}

// PlanMeta plans the restore of meta with no image to read: it answers
// "would this restore here" for an image that cannot be opened yet
// (ckptimg capture --kill asks it of the image it has just written). meta
// is not changed, and must hold no page stored in a parent image; opts
// must not set Rewrite (change meta instead). The session can be checked
// against a Host (CheckHost) and simulated; Check and Restore need an
// image and fail.
func PlanMeta(meta *format.Meta, opts Options) (*Session, error) {
	if opts.Rewrite != nil {
		return nil, errors.New("restorer: PlanMeta does not rewrite: change the metadata before")
	}
	return newSession(&format.Chain{}, meta, opts)
}

func newSession(chain *format.Chain, meta *format.Meta, opts Options) (*Session, error) {
	start := time.Now()
	pl, err := buildPlan(chain, meta, &opts)
	if err != nil {
		return nil, err
	}
	return &Session{chain: chain, opts: opts, plan: pl, planned: time.Since(start)}, nil
}

// Plan returns the plan: the work of the restore in order. It belongs to
// the session and must not be changed.
func (s *Session) Plan() *Plan { return s.plan }

// errNoImage is Check and Restore of a session made by PlanMeta.
var errNoImage = errors.New("restorer: the session has no image (PlanMeta): it can only be checked against a Host and simulated")
