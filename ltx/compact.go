package ltx

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
)

// compactReadBuffer is each input's read buffer. Compaction may merge
// thousands of small files, so it is kept small.
const compactReadBuffer = 4 << 10

// Compactor merges an ordered run of LTX files into one. The inputs must
// have the same page size and contiguous TXID ranges: each starts one TXID
// after the previous one ends. The output holds the newest version of each
// page, takes its commit size, timestamp and post-apply checksum from the
// last input and its pre-apply checksum from the first; if the first input
// is a snapshot, so is the output. Pages past the final commit size are
// dropped.
//
// It streams: memory is one page and one small read buffer per input plus
// the output's page index. Every input is fully verified, file checksum
// included, before the output is completed.
type Compactor struct {
	enc    *Encoder
	inputs []*compactInput
}

// compactInput is one input and the page it is positioned on.
type compactInput struct {
	i    int // position in the run; later inputs are newer
	dec  *Decoder
	hdr  PageHeader
	data []byte
}

// NewCompactor returns a Compactor that writes to w from inputs, oldest
// first.
func NewCompactor(w io.Writer, inputs ...io.Reader) *Compactor {
	enc, _ := NewEncoder(w)
	c := &Compactor{enc: enc}
	for i, r := range inputs {
		c.inputs = append(c.inputs, &compactInput{i: i, dec: newDecoderSize(r, compactReadBuffer)})
	}
	return c
}

// Header returns the output's header once Compact has written it.
func (c *Compactor) Header() Header { return c.enc.Header() }

// Trailer returns the output's trailer once Compact has succeeded.
func (c *Compactor) Trailer() Trailer { return c.enc.Trailer() }

// Compact merges the inputs into one LTX file written to w.
func Compact(w io.Writer, inputs ...io.Reader) error {
	return NewCompactor(w, inputs...).Compact(context.Background())
}

// Compact performs the merge. On error the output is incomplete and must be
// discarded.
func (c *Compactor) Compact(ctx context.Context) error {
	if len(c.inputs) == 0 {
		return errors.New("compact: no input files")
	}
	for _, in := range c.inputs {
		if err := in.dec.DecodeHeader(); err != nil {
			return fmt.Errorf("compact: input %d: %w", in.i, err)
		}
	}
	hdr, err := c.outputHeader()
	if err != nil {
		return err
	}
	if err := c.enc.EncodeHeader(hdr); err != nil {
		return fmt.Errorf("compact: %w", err)
	}

	// A min-heap of inputs by their current page; for equal pages the newest
	// input comes first, so the first one popped is the version to keep.
	h := make(inputHeap, 0, len(c.inputs))
	for _, in := range c.inputs {
		in.data = make([]byte, hdr.PageSize)
		ok, err := in.next()
		if err != nil {
			return err
		}
		if ok {
			h = append(h, in)
		}
	}
	heap.Init(&h)
	for n := 0; len(h) > 0; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("compact: %w", err)
			}
		}
		top := h[0]
		pgno := top.hdr.Pgno
		if pgno <= hdr.Commit {
			if err := c.enc.EncodePage(PageHeader{Pgno: pgno}, top.data); err != nil {
				return fmt.Errorf("compact: page %d from input %d: %w", pgno, top.i, err)
			}
		}
		// Advance every input positioned on this page.
		for len(h) > 0 && h[0].hdr.Pgno == pgno {
			in := h[0]
			ok, err := in.next()
			if err != nil {
				return err
			}
			if ok {
				heap.Fix(&h, 0)
			} else {
				heap.Pop(&h)
			}
		}
	}

	for _, in := range c.inputs {
		if err := in.dec.Close(); err != nil {
			return fmt.Errorf("compact: input %d: %w", in.i, err)
		}
	}
	if !hdr.NoChecksum() {
		c.enc.SetPostApplyChecksum(c.inputs[len(c.inputs)-1].dec.Trailer().PostApplyChecksum)
	}
	if err := c.enc.Close(); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	return nil
}

// outputHeader checks the inputs' headers and derives the output's.
func (c *Compactor) outputHeader() (Header, error) {
	first := c.inputs[0].dec.Header()
	last := c.inputs[len(c.inputs)-1].dec.Header()
	noChecksum := false
	for i, in := range c.inputs {
		h := in.dec.Header()
		noChecksum = noChecksum || h.NoChecksum()
		if i == 0 {
			continue
		}
		prev := c.inputs[i-1].dec.Header()
		switch {
		case h.PageSize != prev.PageSize:
			return Header{}, fmt.Errorf("compact: input %d: %w: %d after %d", i, ErrPageSizeMismatch, h.PageSize, prev.PageSize)
		case h.MinTXID > prev.MaxTXID+1:
			return Header{}, fmt.Errorf("compact: input %d: %w: %s-%s follows %s-%s", i, ErrTXIDGap, h.MinTXID, h.MaxTXID, prev.MinTXID, prev.MaxTXID)
		case h.MinTXID <= prev.MaxTXID:
			return Header{}, fmt.Errorf("compact: input %d: %w: %s-%s follows %s-%s", i, ErrTXIDOverlap, h.MinTXID, h.MaxTXID, prev.MinTXID, prev.MaxTXID)
		}
	}
	hdr := Header{
		Version:          Version,
		PageSize:         first.PageSize,
		Commit:           last.Commit,
		MinTXID:          first.MinTXID,
		MaxTXID:          last.MaxTXID,
		Timestamp:        last.Timestamp,
		PreApplyChecksum: first.PreApplyChecksum,
	}
	if noChecksum {
		hdr.Flags |= HeaderFlagNoChecksum
		hdr.PreApplyChecksum = 0
	}
	return hdr, nil
}

// next reads the input's next page; ok is false at the end of its pages.
func (in *compactInput) next() (ok bool, err error) {
	if err := in.dec.DecodePage(&in.hdr, in.data); err == io.EOF {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("compact: input %d: %w", in.i, err)
	}
	return true, nil
}

// inputHeap orders inputs by current page, newest input first on ties.
type inputHeap []*compactInput

func (h inputHeap) Len() int { return len(h) }
func (h inputHeap) Less(a, b int) bool {
	if h[a].hdr.Pgno != h[b].hdr.Pgno {
		return h[a].hdr.Pgno < h[b].hdr.Pgno
	}
	return h[a].i > h[b].i
}
func (h inputHeap) Swap(a, b int) { h[a], h[b] = h[b], h[a] }
func (h *inputHeap) Push(x any)   { *h = append(*h, x.(*compactInput)) }
func (h *inputHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
