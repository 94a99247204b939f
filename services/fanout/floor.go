package fanout

import "sync"

// floor tracks which source sequences are fully fanned out, and the highest
// sequence below which everything is: the checkpoint.
type floor struct {
	mu      sync.Mutex
	done    uint64          // every seq <= done is finished
	pending map[uint64]int  // seq -> writes outstanding
	ended   map[uint64]bool // finished seqs above done
	order   []uint64        // started seqs above done, ascending
}

func newFloor(start uint64) *floor {
	return &floor{done: start, pending: map[uint64]int{}, ended: map[uint64]bool{}}
}

// start registers seq with n outstanding writes (n may be 0).
func (f *floor) start(seq uint64, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.order = append(f.order, seq)
	if n == 0 {
		f.ended[seq] = true
		f.advance()
		return
	}
	f.pending[seq] = n
}

// finish marks one write of seq done.
func (f *floor) finish(seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending[seq]--
	if f.pending[seq] > 0 {
		return
	}
	delete(f.pending, seq)
	f.ended[seq] = true
	f.advance()
}

func (f *floor) advance() {
	i := 0
	for ; i < len(f.order) && f.ended[f.order[i]]; i++ {
		delete(f.ended, f.order[i])
		f.done = f.order[i]
	}
	f.order = f.order[i:]
}

// value is the checkpoint: everything at or below it is fanned out.
func (f *floor) value() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done
}

// idle tells that every started seq is finished.
func (f *floor) idle() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.order) == 0
}
