package lease

import "sync"

// Watchers fans lease events out to subscribers. Managers embed it to
// implement Manager.Watch.
type Watchers struct {
	mu   sync.Mutex
	next int
	fns  map[int]func(Event)
}

// Watch registers fn until the returned stop function is called.
func (w *Watchers) Watch(fn func(Event)) (stop func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fns == nil {
		w.fns = make(map[int]func(Event))
	}
	id := w.next
	w.next++
	w.fns[id] = fn
	return func() {
		w.mu.Lock()
		delete(w.fns, id)
		w.mu.Unlock()
	}
}

// Emit calls every subscriber with e.
func (w *Watchers) Emit(e Event) {
	w.mu.Lock()
	fns := make([]func(Event), 0, len(w.fns))
	for _, fn := range w.fns {
		fns = append(fns, fn)
	}
	w.mu.Unlock()
	for _, fn := range fns {
		fn(e)
	}
}
