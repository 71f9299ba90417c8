package devices

import (
	"io"
	"sync"
)

// Register offsets of the 8250/16550A, from its base (PC16550D datasheet,
// TI SNLS378C, "Summary of Registers"). Offsets 0 and 1 are the divisor
// latch when LCR.DLAB is set; offset 2 is IIR on read and FCR on write
// whatever DLAB is.
const (
	uartRBR = 0 // receiver buffer (read, DLAB=0)
	uartTHR = 0 // transmitter holding register (write, DLAB=0)
	uartDLL = 0 // divisor latch, least significant byte (DLAB=1)
	uartIER = 1 // interrupt enable (DLAB=0)
	uartDLM = 1 // divisor latch, most significant byte (DLAB=1)
	uartIIR = 2 // interrupt identification (read)
	uartFCR = 2 // FIFO control (write)
	uartLCR = 3 // line control
	uartMCR = 4 // modem control
	uartLSR = 5 // line status
	uartMSR = 6 // modem status
	uartSCR = 7 // scratch
)

// SerialSize is the size to insert a Serial with: its 8 registers span 8
// ports (0x3F8-0x3FF for COM1).
const SerialSize = 8

// Interrupt Enable Register bits (PC16550D, "Interrupt Enable Register").
// Bits 7:4 are always zero on a 16550A; Linux's autoconfig relies on that
// (it writes 0x0F and expects to read back 0x0F, and rejects parts on which
// bit 6 sticks as XScale UARTs).
const (
	ierERBFI = 0x01 // enable received data available (and character timeout) interrupt
	ierETBEI = 0x02 // enable transmitter holding register empty interrupt
	ierELSI  = 0x04 // enable receiver line status interrupt
	ierEDSSI = 0x08 // enable modem status interrupt
	ierMask  = 0x0F
)

// Interrupt Identification Register values (PC16550D, "Interrupt
// Identification Register" and the "Interrupt Control Functions" table).
// Bit 0 is clear when an interrupt is pending; bits 3:1 identify the
// highest-priority one; bits 7:6 are both set when FCR0 enables the FIFOs,
// which is how Linux tells a 16550A (0xC0) from a 16550 with broken FIFOs
// (0x80) or an 8250/16450 (0x00). Bits 5:4 are zero: a 16750 sets bit 5.
const (
	iirNone = 0x01 // no interrupt pending
	iirMSI  = 0x00 // priority 4: modem status
	iirTHRI = 0x02 // priority 3: transmitter holding register empty
	iirRDI  = 0x04 // priority 2: received data available (FIFO at trigger level)
	iirRLSI = 0x06 // priority 1: receiver line status
	iirCTI  = 0x0C // priority 2: character timeout (FIFO mode only)
	iirFIFO = 0xC0 // FIFOs enabled
)

// FIFO Control Register bits (PC16550D, "FIFO Control Register").
const (
	fcrEnable  = 0x01 // FCR0: enable both FIFOs; changing it clears them
	fcrClearRx = 0x02 // FCR1: clear the receiver FIFO (self-clearing)
	fcrClearTx = 0x04 // FCR2: clear the transmitter FIFO (self-clearing)
	fcrDMA     = 0x08 // FCR3: DMA mode select (RXRDY/TXRDY pins; no effect here)
	fcrTrigger = 0xC0 // FCR7:6: receiver FIFO interrupt trigger level
	// fcrStored are the bits that persist; FCR1 and FCR2 self-clear.
	fcrStored = fcrEnable | fcrDMA | fcrTrigger
)

// Line Control Register bits (PC16550D, "Line Control Register"). Only DLAB
// changes the emulation: word length, stop bits and parity have no meaning
// for a byte stream, but the register reads back what was written.
const lcrDLAB = 0x80 // divisor latch access bit

// Modem Control Register bits (PC16550D, "MODEM Control Register"). Bits 7:5
// are always zero on a 16550A.
const (
	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08
	mcrLOOP = 0x10 // local loopback: TX feeds RX, modem outputs feed modem inputs
	mcrMask = 0x1F
)

// Line Status Register bits (PC16550D, "Line Status Register").
const (
	lsrDR   = 0x01 // data ready: at least one byte in RBR or the RX FIFO
	lsrOE   = 0x02 // overrun error
	lsrPE   = 0x04 // parity error
	lsrFE   = 0x08 // framing error
	lsrBI   = 0x10 // break interrupt
	lsrTHRE = 0x20 // THR (TX FIFO) empty
	lsrTEMT = 0x40 // THR and transmitter shift register both empty
	// lsrErrors are the bits that raise the receiver line status interrupt
	// and are cleared by reading LSR. Only OE can happen here: bytes arrive
	// without framing, so PE, FE, BI and LSR7 (error in RX FIFO) stay clear.
	lsrErrors = lsrOE | lsrPE | lsrFE | lsrBI
)

// Modem Status Register bits (PC16550D, "MODEM Status Register"). Bits 3:0
// record changes of the inputs in bits 7:4 since MSR was last read.
const (
	msrDCTS   = 0x01 // delta CTS
	msrDDSR   = 0x02 // delta DSR
	msrTERI   = 0x04 // trailing edge of RI (RI went from on to off)
	msrDDCD   = 0x08 // delta DCD
	msrCTS    = 0x10
	msrDSR    = 0x20
	msrRI     = 0x40
	msrDCD    = 0x80
	msrDeltas = 0x0F
)

const (
	// serialFIFOSize is the depth of the 16550A's receiver FIFO.
	serialFIFOSize = 16

	// serialModemInputs is what MSR reports outside loopback: the other
	// end of the line is always there and ready (CTS, DSR and DCD on, no
	// ring), so a guest using hardware flow control or waiting for carrier
	// proceeds.
	serialModemInputs = msrCTS | msrDSR | msrDCD
)

// SerialInputQueueSize is the capacity of the host-side input queue that
// feeds the UART's receiver FIFO: at most this many bytes, besides the 16 in
// the FIFO, wait for the guest to read them.
const SerialInputQueueSize = 64 << 10

// Serial is an 8250-family UART with 16550A FIFOs (TI/National PC16550D),
// complete enough for Linux's 8250 driver to autoconfigure it as a 16550A
// and for earlyprintk/earlycon to poll it.
//
// Transmission is instantaneous: a byte written to THR goes to the output
// writer at once (or, in loopback mode, to the receiver FIFO) and LSR always
// reports THRE and TEMT. Reception is fed by Receive through a bounded host
// queue into the 16-byte receiver FIFO; the FIFO is refilled from the queue
// as soon as the guest reads from it (there is no line rate).
//
// Serial is safe for concurrent use by vCPU threads (Read, Write) and the
// host input goroutine (Receive).
type Serial struct {
	irq IRQLine

	// outMu serialises calls to out, which is called without mu held so
	// that a slow writer never stalls Receive or other registers.
	outMu  sync.Mutex
	out    io.Writer
	outBuf [1]byte

	// space is signalled after a short Receive once the guest has drained
	// the input queue to half full. Buffered (1): sends never block.
	space chan struct{}

	mu sync.Mutex

	ier byte
	fcr byte // fcrStored bits only
	lcr byte
	mcr byte
	// lsrErr holds the sticky error bits of LSR (lsrErrors); DR, THRE and
	// TEMT are derived when LSR is read.
	lsrErr byte
	// msr holds the modem inputs (7:4) and their change bits (3:0).
	msr byte
	scr byte
	dll byte
	dlm byte

	// thrPending is the THRE interrupt's own latch. The datasheet sets it
	// when THR empties and clears it when IIR is read while reporting it or
	// when THR is written. Transmission being instantaneous, a THR write
	// empties THR again at once, so the latch is set again right away.
	thrPending bool

	// rx is the receiver FIFO (in 16450 mode, FIFO disabled, only one byte
	// of it is used: the RBR), a ring of rxLen bytes starting at rxHead.
	rx     [serialFIFOSize]byte
	rxHead int
	rxLen  int
	// rbr is the last byte read from the FIFO, returned again if the
	// guest reads RBR with nothing received.
	rbr byte

	// host is the bounded input queue between Receive and rx, a ring of
	// hostLen bytes starting at hostHead.
	host     []byte
	hostHead int
	hostLen  int
	// wantSpace records that Receive turned input away, so that the next
	// drain below half full signals space.
	wantSpace bool

	// irqLevel is the level last driven on irq.
	irqLevel bool
}

// NewSerial returns a UART in its reset state that drives irq and writes
// transmitted bytes to out.
//
// out is called on vCPU threads, once per transmitted byte, without the
// UART's register lock held but serialised with other calls to out. It must
// not block for long: the vCPU that wrote THR waits for it. The intended out
// is a batching writer that only appends to a buffer and flushes elsewhere.
// Write errors are ignored (a real UART has nowhere to report them either).
// A nil out discards output; a nil irq is a line connected to nothing.
func NewSerial(irq IRQLine, out io.Writer) *Serial {
	if irq == nil {
		irq = noIRQ{}
	}
	if out == nil {
		out = io.Discard
	}
	return &Serial{
		irq:   irq,
		out:   out,
		space: make(chan struct{}, 1),
		msr:   serialModemInputs,
		// The divisor latch is not affected by master reset and its
		// power-on value is undefined; start at 1 (115200 baud with the
		// PC's 1.8432 MHz clock) as firmware would leave a console port.
		// It must not be 0: Linux's earlycon without a baud option
		// divides by it (probe_baud).
		dll:  1,
		host: make([]byte, SerialInputQueueSize),
	}
}

// noIRQ is the IRQLine of a device whose interrupt pin is not connected.
type noIRQ struct{}

func (noIRQ) SetLevel(bool) {}

// Read implements Device.Read.
func (s *Serial) Read(offset uint64, data []byte) {
	s.mu.Lock()
	for i := range data {
		off := offset + uint64(i)
		if offset >= SerialSize || off >= SerialSize {
			data[i] = 0xFF
			continue
		}
		data[i] = s.readReg(off)
	}
	s.updateIRQ()
	s.mu.Unlock()
}

// Write implements Device.Write.
func (s *Serial) Write(offset uint64, data []byte) {
	var tx byte
	transmit := false
	s.mu.Lock()
	for i, v := range data {
		if offset >= SerialSize || offset+uint64(i) >= SerialSize {
			break
		}
		// At most one byte of an access is at offset 0 (THR), so at
		// most one byte is transmitted per access.
		if s.writeReg(offset+uint64(i), v) {
			tx, transmit = v, true
		}
	}
	s.updateIRQ()
	s.mu.Unlock()

	if transmit {
		s.outMu.Lock()
		s.outBuf[0] = tx
		_, _ = s.out.Write(s.outBuf[:])
		s.outMu.Unlock()
	}
}

// Receive queues host input for the guest and returns how many bytes of p
// it took. It takes fewer than len(p) only when the input queue is full
// (SerialInputQueueSize bytes the guest has not read yet): the caller should
// hold on to the rest and retry after InputSpace signals, rather than drop
// it. Receive raises the received-data interrupt if the guest enabled it.
// It is safe to call concurrently with guest accesses.
func (s *Serial) Receive(p []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(len(p), len(s.host)-s.hostLen)
	tail := (s.hostHead + s.hostLen) % len(s.host)
	c := copy(s.host[tail:], p[:n])
	copy(s.host, p[c:n])
	s.hostLen += n
	if n < len(p) {
		s.wantSpace = true
	}
	s.refill()
	s.updateIRQ()
	return n
}

// InputSpace returns a channel that receives a value when, after a Receive
// that could not take all of its input, the guest has drained the input
// queue to half full. It is never closed.
func (s *Serial) InputSpace() <-chan struct{} {
	return s.space
}

// RegisterName implements RegisterNamer. Offsets 0 and 1 are named after
// the current state of LCR.DLAB.
func (s *Serial) RegisterName(offset uint64, write bool) string {
	switch offset {
	case uartRBR, uartIER:
		// Statistics name a register once, on its first access, so the
		// name cannot follow LCR.DLAB: offsets 0 and 1 get both names.
		switch {
		case offset == uartIER:
			return "IER/DLM"
		case write:
			return "THR/DLL"
		default:
			return "RBR/DLL"
		}
	case uartIIR:
		if write {
			return "FCR"
		}
		return "IIR"
	case uartLCR:
		return "LCR"
	case uartMCR:
		return "MCR"
	case uartLSR:
		return "LSR"
	case uartMSR:
		return "MSR"
	case uartSCR:
		return "SCR"
	}
	return ""
}

// readReg reads register off (< SerialSize) with s.mu held.
func (s *Serial) readReg(off uint64) byte {
	switch off {
	case uartRBR:
		if s.lcr&lcrDLAB != 0 {
			return s.dll
		}
		return s.popRx()
	case uartIER:
		if s.lcr&lcrDLAB != 0 {
			return s.dlm
		}
		return s.ier
	case uartIIR:
		id := s.interruptID()
		// "Reading the IIR register (if source of interrupt)" resets
		// the THRE interrupt (PC16550D, Interrupt Control Functions).
		// Linux's startup THRE test depends on this: IER=THRI, read
		// IIR (THRE), IER=0, IER=THRI, read IIR (THRE again).
		if id == iirTHRI {
			s.thrPending = false
		}
		if s.fcr&fcrEnable != 0 {
			id |= iirFIFO
		}
		return id
	case uartLCR:
		return s.lcr
	case uartMCR:
		return s.mcr
	case uartLSR:
		v := s.lsrErr | lsrTHRE | lsrTEMT
		if s.rxLen > 0 {
			v |= lsrDR
		}
		// Reading LSR clears OE, PE, FE and BI, and with them the
		// receiver line status interrupt.
		s.lsrErr = 0
		return v
	case uartMSR:
		v := s.msr
		// Reading MSR clears the change bits, and with them the modem
		// status interrupt.
		s.msr &^= msrDeltas
		return v
	case uartSCR:
		return s.scr
	}
	return 0xFF
}

// writeReg writes v to register off (< SerialSize) with s.mu held. It
// reports whether v is to be transmitted to the output writer.
func (s *Serial) writeReg(off uint64, v byte) (transmit bool) {
	switch off {
	case uartTHR:
		if s.lcr&lcrDLAB != 0 {
			s.dll = v
			return false
		}
		// Writing THR resets the THRE interrupt; THR then empties at
		// once, which sets it again.
		s.thrPending = true
		if s.mcr&mcrLOOP != 0 {
			// Loopback: "the transmitter Serial Output is set to the
			// marking state ... the receiver Serial Input is
			// disconnected ... the output of the Transmitter Shift
			// Register is looped back into the Receiver Shift
			// Register". Linux's size_fifo counts the FIFO this way.
			s.pushRx(v)
			return false
		}
		return true
	case uartIER:
		if s.lcr&lcrDLAB != 0 {
			s.dlm = v
			return false
		}
		s.ier = v & ierMask
		// Enabling ETBEI while THR is empty raises the THRE interrupt
		// even if an earlier IIR read had cleared it: "Real 16550s
		// should always reassert this interrupt whenever the
		// transmitter is idle and the interrupt is enabled" (Linux,
		// serial8250_do_startup), and Linux marks the port
		// UART_BUG_THRE and polls it with a timer otherwise. Disabling
		// ETBEI drops the latch so that a stale THRE is not reported
		// when it is enabled again.
		s.thrPending = s.ier&ierETBEI != 0
	case uartFCR:
		s.writeFCR(v)
	case uartLCR:
		s.lcr = v
	case uartMCR:
		wasLoop := s.mcr&mcrLOOP != 0
		s.mcr = v & mcrMask
		s.updateModemInputs()
		if wasLoop && s.mcr&mcrLOOP == 0 {
			// The receiver input is reconnected: host input that
			// queued up during loopback flows in again.
			s.refill()
		}
	case uartLSR, uartMSR:
		// LSR and MSR are read-only for our purposes: the datasheet
		// reserves LSR writes for factory test, and MSR's inputs come
		// from the line.
	case uartSCR:
		s.scr = v
	}
	return false
}

// writeFCR implements a write to the FIFO Control Register, with s.mu held.
func (s *Serial) writeFCR(v byte) {
	// "Resetting FCR0 will clear all bytes in both FIFOs", and the FIFOs
	// are likewise cleared when FCR0 changes (entering or leaving FIFO
	// mode).
	if (v^s.fcr)&fcrEnable != 0 {
		s.clearRx()
	}
	if v&fcrEnable == 0 {
		// "FCR0 must be a 1 when other FCR bits are written to or they
		// will not be programmed."
		s.fcr = 0
		s.refill()
		return
	}
	if v&fcrClearRx != 0 {
		s.clearRx()
	}
	// fcrClearTx: the transmitter never holds anything.
	s.fcr = v & fcrStored
	s.refill()
}

// rxCap is the number of bytes the receiver holds: the FIFO in FIFO mode,
// the RBR alone in 16450 mode.
func (s *Serial) rxCap() int {
	if s.fcr&fcrEnable != 0 {
		return serialFIFOSize
	}
	return 1
}

// triggerLevel is the receiver FIFO trigger level selected by FCR7:6
// (PC16550D, "FIFO Control Register": 1, 4, 8 or 14 bytes).
func (s *Serial) triggerLevel() int {
	switch s.fcr & fcrTrigger {
	case 0x00:
		return 1
	case 0x40:
		return 4
	case 0x80:
		return 8
	default:
		return 14
	}
}

// pushRx puts a byte into the receiver as the receiver shift register would,
// with s.mu held.
func (s *Serial) pushRx(v byte) {
	if s.rxLen >= s.rxCap() {
		// Overrun. In FIFO mode "the character in the shift register
		// is overwritten, but it is not transferred to the FIFO"; in
		// 16450 mode the new character overwrites RBR.
		s.lsrErr |= lsrOE
		if s.fcr&fcrEnable == 0 && s.rxLen > 0 {
			s.rx[(s.rxHead+s.rxLen-1)%serialFIFOSize] = v
		}
		return
	}
	s.rx[(s.rxHead+s.rxLen)%serialFIFOSize] = v
	s.rxLen++
}

// popRx removes the oldest byte from the receiver, with s.mu held.
func (s *Serial) popRx() byte {
	if s.rxLen == 0 {
		return s.rbr
	}
	s.rbr = s.rx[s.rxHead]
	s.rxHead = (s.rxHead + 1) % serialFIFOSize
	s.rxLen--
	s.refill()
	return s.rbr
}

// clearRx empties the receiver, with s.mu held. Bytes already moved from
// the host queue into the FIFO are lost, as they are on hardware.
func (s *Serial) clearRx() {
	s.rxHead, s.rxLen = 0, 0
}

// refill moves host input into the receiver while it has room, with s.mu
// held. In loopback mode the receiver input is disconnected from the line,
// so host input waits in the queue.
func (s *Serial) refill() {
	if s.mcr&mcrLOOP != 0 {
		return
	}
	for s.hostLen > 0 && s.rxLen < s.rxCap() {
		s.pushRx(s.host[s.hostHead])
		s.hostHead = (s.hostHead + 1) % len(s.host)
		s.hostLen--
	}
	if s.wantSpace && s.hostLen <= len(s.host)/2 {
		s.wantSpace = false
		select {
		case s.space <- struct{}{}:
		default:
		}
	}
}

// updateModemInputs recomputes MSR's inputs after MCR changed, with s.mu
// held, recording changes in the delta bits. In loopback mode "the four
// MODEM Control inputs (CTS, DSR, RI, and DCD) are disconnected; and the
// four MODEM Control outputs (DTR, RTS, OUT 1, and OUT 2) are internally
// connected to the four MODEM Control inputs": RTS to CTS, DTR to DSR, OUT1
// to RI and OUT2 to DCD. Linux's autoconfig writes MCR=LOOP|OUT2|RTS and
// expects MSR[7:4] to read 0x90.
func (s *Serial) updateModemInputs() {
	in := byte(serialModemInputs)
	if s.mcr&mcrLOOP != 0 {
		in = 0
		if s.mcr&mcrRTS != 0 {
			in |= msrCTS
		}
		if s.mcr&mcrDTR != 0 {
			in |= msrDSR
		}
		if s.mcr&mcrOUT1 != 0 {
			in |= msrRI
		}
		if s.mcr&mcrOUT2 != 0 {
			in |= msrDCD
		}
	}
	old := s.msr &^ msrDeltas
	changed := old ^ in
	delta := s.msr & msrDeltas
	if changed&msrCTS != 0 {
		delta |= msrDCTS
	}
	if changed&msrDSR != 0 {
		delta |= msrDDSR
	}
	if old&msrRI != 0 && in&msrRI == 0 {
		delta |= msrTERI
	}
	if changed&msrDCD != 0 {
		delta |= msrDDCD
	}
	s.msr = in | delta
}

// interruptID returns IIR bits 3:0 for the highest-priority enabled pending
// interrupt, or iirNone, with s.mu held. It has no side effects.
//
// The character timeout interrupt fires on hardware when bytes below the
// trigger level have sat in the FIFO for four character times with nothing
// arriving. The host queue refills the FIFO the moment there is room, so a
// FIFO below its trigger level means no more input is coming: the timeout is
// reported at once rather than after a timer. Above the trigger level the
// interrupt is the ordinary received data available one.
func (s *Serial) interruptID() byte {
	switch {
	case s.ier&ierELSI != 0 && s.lsrErr != 0:
		return iirRLSI
	case s.ier&ierERBFI != 0 && s.rxLen > 0:
		if s.fcr&fcrEnable != 0 && s.rxLen < s.triggerLevel() {
			return iirCTI
		}
		return iirRDI
	case s.ier&ierETBEI != 0 && s.thrPending:
		return iirTHRI
	case s.ier&ierEDSSI != 0 && s.msr&msrDeltas != 0:
		return iirMSI
	}
	return iirNone
}

// updateIRQ drives the interrupt line to "an enabled interrupt is pending",
// with s.mu held, calling SetLevel only on changes.
//
// COM1's IRQ 4 is edge-triggered at the IOAPIC, so each new interrupt
// condition must produce a rising edge. The line follows the pending state
// exactly: the guest's handler reads IIR until it reports no interrupt,
// which drops the line, so whatever becomes pending afterwards raises it
// again.
func (s *Serial) updateIRQ() {
	level := s.interruptID() != iirNone
	if level != s.irqLevel {
		s.irqLevel = level
		s.irq.SetLevel(level)
	}
}
