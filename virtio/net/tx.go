package net

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/gvmm/gvmm/eventfd"
	"github.com/gvmm/gvmm/virtio"
)

// transmitter serves the transmit queue on its kicks.
type transmitter struct {
	d        *Device
	q        *virtio.Queue
	kick     *eventfd.Waiter
	irq      virtio.Interrupt
	fail     func(error)
	features uint64

	// mu keeps ProcessTX and the worker apart.
	mu     sync.Mutex
	chain  virtio.Chain
	frame  TXFrame
	iov    [][]byte
	broken bool
}

func newTransmitter(d *Device, aq virtio.ActiveQueue, kick *eventfd.Waiter, a virtio.Activation) *transmitter {
	return &transmitter{d: d, q: aq.Queue, kick: kick, irq: a.Interrupt, fail: a.Fail, features: a.Features}
}

func (t *transmitter) run() {
	defer t.d.wg.Done()
	// Chains made available before the device started are not lost.
	t.mu.Lock()
	stopped := t.process()
	t.mu.Unlock()
	for !stopped {
		if _, err := t.kick.Wait(); err != nil {
			if !errors.Is(err, eventfd.ErrStopped) {
				t.fail(fmt.Errorf("virtio-net transmit queue: %w", err))
			}
			return
		}
		t.mu.Lock()
		stopped = t.process()
		t.mu.Unlock()
	}
}

// process sends every available frame with notifications off (section
// 2.7.10), and raises the interrupt the driver wants after every irqBatch
// frames and at the end. It reports whether the device is stopping.
func (t *transmitter) process() (stopped bool) {
	if t.broken {
		return false
	}
	q := t.q
	n := 0
	defer func() {
		if q.NeedsInterrupt() {
			t.irq.NotifyQueue(txQueue)
		}
	}()
	for {
		q.DisableNotifications()
		for {
			ok, err := q.Pop(&t.chain)
			if err != nil {
				t.breakQueue(err)
				return false
			}
			if !ok {
				break
			}
			stopped := t.send()
			// Transmit buffers are only read: 0 bytes written
			// (section 5.1.6.2).
			if err := q.Push(t.chain.Head, 0); err != nil {
				t.breakQueue(err)
				return false
			}
			if stopped {
				return true
			}
			if n++; n%irqBatch == 0 && q.NeedsInterrupt() {
				t.irq.NotifyQueue(txQueue)
			}
		}
		if !q.EnableNotifications() {
			return false
		}
	}
}

// send checks the frame in t.chain and writes it to the backend. A
// malformed frame is dropped and counted; so is one the backend refuses.
func (t *transmitter) send() (stopped bool) {
	c := &t.d.c
	if err := ParseTX(t.chain.Readable, t.features, &t.frame); err != nil {
		c.txMalformed.Add(1)
		return false
	}
	t.iov = append(append(t.iov[:0], t.frame.Wire[:]), t.frame.Frame...)
	if _, err := t.d.cfg.Backend.WriteFrame(t.iov); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return true
		}
		// The host's stack refused it (a tap that is down says EIO):
		// the frame is lost, as on a wire.
		c.txErrors.Add(1)
		t.d.backendError(err)
		return false
	}
	c.txFrames.Add(1)
	c.txBytes.Add(uint64(t.frame.Len))
	return false
}

func (t *transmitter) breakQueue(err error) {
	t.broken = true
	t.fail(fmt.Errorf("virtio-net transmit queue: %w", err))
}
