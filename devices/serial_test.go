package devices

import (
	"bytes"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestSerial() (*Serial, *fakeIRQ, *bytes.Buffer) {
	irq := &fakeIRQ{}
	var out bytes.Buffer
	return NewSerial(irq, &out), irq, &out
}

func TestSerialResetState(t *testing.T) {
	s, irq, _ := newTestSerial()
	tests := []struct {
		reg  uint64
		name string
		want byte
	}{
		{uartIER, "IER", 0x00},
		{uartIIR, "IIR", iirNone},
		{uartLCR, "LCR", 0x00},
		{uartMCR, "MCR", 0x00},
		{uartLSR, "LSR", lsrTHRE | lsrTEMT},
		{uartMSR, "MSR", msrCTS | msrDSR | msrDCD},
		{uartSCR, "SCR", 0x00},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, inb(s, tt.reg), tt.name)
	}
	assert.Empty(t, irq.transitions())
}

func TestSerialScratch(t *testing.T) {
	s, _, _ := newTestSerial()
	for _, v := range []byte{0x00, 0x55, 0xAA, 0xFF} {
		outb(s, uartSCR, v)
		assert.Equal(t, v, inb(s, uartSCR))
	}
}

func TestSerialDivisorLatch(t *testing.T) {
	s, _, out := newTestSerial()
	outb(s, uartIER, ierERBFI)

	outb(s, uartLCR, lcrDLAB|0x03)
	assert.Equal(t, byte(1), inb(s, uartDLL), "initial divisor must be non-zero (earlycon divides by it)")
	assert.Equal(t, byte(0), inb(s, uartDLM))
	outb(s, uartDLL, 0x0C)
	outb(s, uartDLM, 0x01)
	assert.Equal(t, byte(0x0C), inb(s, uartDLL))
	assert.Equal(t, byte(0x01), inb(s, uartDLM))
	assert.Equal(t, byte(lcrDLAB|0x03), inb(s, uartLCR))
	// Names do not follow DLAB: statistics take a register's name once.
	assert.Equal(t, "THR/DLL", s.RegisterName(0, true))
	assert.Equal(t, "IER/DLM", s.RegisterName(1, false))

	outb(s, uartLCR, 0x03)
	assert.Equal(t, byte(ierERBFI), inb(s, uartIER), "DLM write must not touch IER")
	assert.Empty(t, out.Bytes(), "DLL write must not transmit")
	assert.Equal(t, "THR/DLL", s.RegisterName(0, true))
	assert.Equal(t, "RBR/DLL", s.RegisterName(0, false))
	assert.Equal(t, "IER/DLM", s.RegisterName(1, true))

	outb(s, uartLCR, lcrDLAB)
	assert.Equal(t, byte(0x0C), inb(s, uartDLL), "divisor survives DLAB toggling")
}

func TestSerialLCR(t *testing.T) {
	s, _, _ := newTestSerial()
	for _, v := range []byte{0x03, 0x1F, 0x7F, 0xBF, 0x00} {
		outb(s, uartLCR, v)
		assert.Equal(t, v, inb(s, uartLCR))
	}
}

func TestSerialIERMasksHighBits(t *testing.T) {
	s, _, _ := newTestSerial()
	outb(s, uartIER, 0xFF)
	assert.Equal(t, byte(0x0F), inb(s, uartIER))
	outb(s, uartMCR, 0xFF)
	assert.Equal(t, byte(0x1F), inb(s, uartMCR))
}

func TestSerialFIFOEnable(t *testing.T) {
	tests := []struct {
		name string
		fcr  byte
		ier  byte
		want byte
	}{
		{"FIFO off, idle", 0x00, 0, 0x01},
		{"FIFO on, idle", fcrEnable, 0, 0xC1},
		{"FIFO on, trigger bits, idle", fcrEnable | 0xC0, 0, 0xC1},
		{"FIFO on, THRE", fcrEnable, ierETBEI, 0xC2},
		{"FIFO off, THRE", 0x00, ierETBEI, 0x02},
		{"bits without FCR0 are ignored", 0xC6, ierETBEI, 0x02},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, _ := newTestSerial()
			outb(s, uartFCR, tt.fcr)
			outb(s, uartIER, tt.ier)
			assert.Equal(t, tt.want, inb(s, uartIIR))
			assert.Zero(t, inb(s, uartIIR)&0x30, "IIR bits 5:4 must stay clear (bit 5 would mean 16750)")
			assert.Equal(t, "FCR", s.RegisterName(2, true))
			assert.Equal(t, "IIR", s.RegisterName(2, false))
		})
	}
}

// linux8250Autoconfig replays the probe of Linux's 8250 driver
// (drivers/tty/serial/8250/8250_port.c: autoconfig, autoconfig_16550a,
// size_fifo) and returns the port type it would settle on.
func linux8250Autoconfig(t *testing.T, s *Serial) string {
	t.Helper()
	// IER test.
	scratch := inb(s, uartIER)
	outb(s, uartIER, 0)
	scratch2 := inb(s, uartIER) & 0x0F
	outb(s, uartIER, 0x0F)
	scratch3 := inb(s, uartIER) & 0x0F
	outb(s, uartIER, scratch)
	if scratch2 != 0 || scratch3 != 0x0F {
		return "none (IER test failed)"
	}

	saveMCR := inb(s, uartMCR)
	saveLCR := inb(s, uartLCR)

	// Loopback test: MSR must reflect RTS and OUT2 as CTS and DCD.
	outb(s, uartMCR, mcrLOOP|0x0A)
	status1 := inb(s, uartMSR) & 0xF0
	outb(s, uartMCR, saveMCR)
	if status1 != 0x90 {
		return "none (LOOP test failed)"
	}

	outb(s, uartLCR, 0xBF) // UART_LCR_CONF_MODE_B
	outb(s, 2, 0)          // UART_EFR
	outb(s, uartLCR, 0)
	outb(s, uartFCR, fcrEnable)
	var typ string
	switch inb(s, uartIIR) >> 6 {
	case 0:
		return "8250/16450"
	case 1:
		return "unknown"
	case 2:
		return "16550"
	}
	typ = "16550A"

	// autoconfig_16550a: no EFR under DLAB (ST16C650V1) ...
	outb(s, uartLCR, lcrDLAB)
	if inb(s, 2) == 0 {
		return "ST16650"
	}
	// ... nor under 0xBF (16850).
	outb(s, uartLCR, 0xBF)
	if inb(s, 2) == 0 {
		return "16850 or similar"
	}
	// 16750: IIR bit 5 follows FCR bit 5 when DLAB is set.
	outb(s, uartLCR, 0)
	outb(s, uartFCR, fcrEnable|0x20)
	st1 := inb(s, uartIIR) & 0xE0
	outb(s, uartFCR, fcrEnable)
	outb(s, uartLCR, lcrDLAB)
	outb(s, uartFCR, fcrEnable|0x20)
	st2 := inb(s, uartIIR) & 0xE0
	outb(s, uartFCR, fcrEnable)
	outb(s, uartLCR, 0)
	if st1 == 0xC0 && st2 == 0xE0 {
		return "16750"
	}
	// XScale: IER bit 6 (UUE) sticks.
	iersave := inb(s, uartIER)
	outb(s, uartIER, iersave^0x40)
	if inb(s, uartIER)&0x40 != 0 {
		return "XScale"
	}
	outb(s, uartIER, iersave)

	// size_fifo: count the RX FIFO through loopback.
	oldLCR := inb(s, uartLCR)
	outb(s, uartLCR, 0)
	oldMCR := inb(s, uartMCR)
	outb(s, uartFCR, fcrEnable|fcrClearRx|fcrClearTx)
	outb(s, uartMCR, mcrLOOP)
	outb(s, uartLCR, lcrDLAB)
	oldDLL, oldDLM := inb(s, uartDLL), inb(s, uartDLM)
	outb(s, uartDLL, 1)
	outb(s, uartDLM, 0)
	outb(s, uartLCR, 0x03)
	for i := range 256 {
		outb(s, uartTHR, byte(i))
	}
	count := 0
	for inb(s, uartLSR)&lsrDR != 0 && count < 256 {
		inb(s, uartRBR)
		count++
	}
	outb(s, uartFCR, fcrEnable)
	outb(s, uartMCR, oldMCR)
	outb(s, uartLCR, lcrDLAB)
	outb(s, uartDLL, oldDLL)
	outb(s, uartDLM, oldDLM)
	outb(s, uartLCR, oldLCR)
	if count == 64 {
		return "U6_16550A"
	}
	require.Equal(t, 16, count, "size_fifo")

	// Reset the UART as autoconfig does.
	outb(s, uartMCR, saveMCR)
	outb(s, uartFCR, fcrEnable|fcrClearRx|fcrClearTx)
	outb(s, uartFCR, 0)
	inb(s, uartRBR)
	outb(s, uartIER, 0)
	outb(s, uartLCR, saveLCR)
	return typ
}

func TestSerialLinuxAutoconfig(t *testing.T) {
	s, irq, out := newTestSerial()
	require.Equal(t, "16550A", linux8250Autoconfig(t, s))
	assert.Empty(t, out.Bytes(), "loopback bytes must not reach the output")
	assert.False(t, irq.level())
	// Afterwards the port is idle and works normally.
	assert.Equal(t, byte(iirNone), inb(s, uartIIR))
	assert.Equal(t, byte(lsrTHRE|lsrTEMT), inb(s, uartLSR))
	outb(s, uartTHR, 'x')
	assert.Equal(t, "x", out.String())
}

func TestSerialLoopback(t *testing.T) {
	s, irq, out := newTestSerial()
	outb(s, uartFCR, fcrEnable)
	outb(s, uartMCR, mcrLOOP)
	// Host input waits while the receiver is disconnected.
	require.Equal(t, 3, s.Receive([]byte("abc")))
	assert.Zero(t, inb(s, uartLSR)&lsrDR)

	outb(s, uartTHR, 'L')
	assert.Empty(t, out.Bytes())
	assert.Equal(t, byte(lsrDR|lsrTHRE|lsrTEMT), inb(s, uartLSR))
	assert.Equal(t, byte('L'), inb(s, uartRBR))
	assert.Zero(t, inb(s, uartLSR)&lsrDR)

	// Overrun: a full FIFO keeps its bytes and flags OE, which raises
	// the line status interrupt and clears on an LSR read.
	outb(s, uartIER, ierELSI)
	for i := range 20 {
		outb(s, uartTHR, byte(i))
	}
	assert.True(t, irq.level())
	assert.Equal(t, byte(iirFIFO|iirRLSI), inb(s, uartIIR))
	assert.Equal(t, byte(lsrDR|lsrOE|lsrTHRE|lsrTEMT), inb(s, uartLSR))
	assert.False(t, irq.level(), "reading LSR clears the line status interrupt")
	assert.Equal(t, byte(lsrDR|lsrTHRE|lsrTEMT), inb(s, uartLSR))
	for i := range 16 {
		require.Equal(t, byte(i), inb(s, uartRBR))
	}
	assert.Zero(t, inb(s, uartLSR)&lsrDR)

	// Leaving loopback reconnects the receiver to the host queue.
	outb(s, uartMCR, 0)
	assert.Equal(t, byte('a'), inb(s, uartRBR))
	assert.Equal(t, byte('b'), inb(s, uartRBR))
	assert.Equal(t, byte('c'), inb(s, uartRBR))
}

func TestSerialLoopback16450Overrun(t *testing.T) {
	s, _, _ := newTestSerial()
	outb(s, uartMCR, mcrLOOP)
	outb(s, uartTHR, 1)
	outb(s, uartTHR, 2)
	assert.Equal(t, byte(lsrDR|lsrOE|lsrTHRE|lsrTEMT), inb(s, uartLSR))
	assert.Equal(t, byte(2), inb(s, uartRBR), "in 16450 mode an overrun overwrites RBR")
	assert.Zero(t, inb(s, uartLSR)&lsrDR)
}

func TestSerialModemStatus(t *testing.T) {
	tests := []struct {
		mcr  byte
		want byte // MSR bits 7:4
	}{
		{0, 0xB0},
		{mcrLOOP, 0x00},
		{mcrLOOP | mcrRTS, msrCTS},
		{mcrLOOP | mcrDTR, msrDSR},
		{mcrLOOP | mcrOUT1, msrRI},
		{mcrLOOP | mcrOUT2, msrDCD},
		{mcrLOOP | mcrOUT2 | mcrRTS, 0x90},
		{mcrLOOP | 0x0F, 0xF0},
	}
	for _, tt := range tests {
		s, _, _ := newTestSerial()
		outb(s, uartMCR, tt.mcr)
		assert.Equal(t, tt.want, inb(s, uartMSR)&0xF0, "MCR %#x", tt.mcr)
	}

	// Deltas and the modem status interrupt.
	s, irq, _ := newTestSerial()
	outb(s, uartIER, ierEDSSI)
	outb(s, uartMCR, mcrLOOP|0x0F) // all inputs on: DSR, CTS, DCD unchanged, RI rises
	assert.Equal(t, byte(0xF0), inb(s, uartMSR), "RI rising is not a trailing edge")
	assert.False(t, irq.level())
	outb(s, uartMCR, mcrLOOP) // everything drops
	assert.True(t, irq.level())
	assert.Equal(t, byte(iirMSI), inb(s, uartIIR))
	assert.Equal(t, byte(msrDCTS|msrDDSR|msrTERI|msrDDCD), inb(s, uartMSR))
	assert.False(t, irq.level(), "reading MSR clears the modem status interrupt")
	assert.Equal(t, byte(iirNone), inb(s, uartIIR))
}

func TestSerialTHREInterrupt(t *testing.T) {
	s, irq, out := newTestSerial()
	outb(s, uartFCR, fcrEnable)

	// Linux's startup THRE test.
	outb(s, uartIER, ierETBEI)
	assert.Equal(t, []bool{true}, irq.transitions(), "enabling ETBEI with THR empty raises THRE")
	assert.Equal(t, byte(0xC2), inb(s, uartIIR))
	assert.Equal(t, []bool{false}, irq.transitions(), "reading IIR reporting THRE clears it")
	assert.Equal(t, byte(0xC1), inb(s, uartIIR))
	outb(s, uartIER, 0)
	assert.Empty(t, irq.transitions())
	outb(s, uartIER, ierETBEI)
	assert.Equal(t, []bool{true}, irq.transitions(), "THRE is reasserted when ETBEI is enabled again")
	assert.Equal(t, byte(0xC2), inb(s, uartIIR))
	outb(s, uartIER, 0)
	assert.Equal(t, []bool{false}, irq.transitions())

	// Transmitting from the interrupt handler: every THR write empties
	// THR at once, so THRE is pending again after the write.
	outb(s, uartIER, ierETBEI)
	require.Equal(t, byte(0xC2), inb(s, uartIIR))
	irq.transitions()
	outb(s, uartTHR, 'a')
	assert.Equal(t, []bool{true}, irq.transitions(), "new edge after the handler saw IIR")
	outb(s, uartTHR, 'b')
	assert.Empty(t, irq.transitions(), "no change while still pending")
	assert.Equal(t, byte(0xC2), inb(s, uartIIR))
	assert.Equal(t, byte(0xC1), inb(s, uartIIR))
	assert.Equal(t, []bool{false}, irq.transitions())
	assert.Equal(t, "ab", out.String())

	// A THRE condition that is not enabled does not interrupt.
	outb(s, uartIER, 0)
	outb(s, uartTHR, 'c')
	assert.Equal(t, byte(0xC1), inb(s, uartIIR))
	assert.Empty(t, irq.transitions())
}

func TestSerialRXInterruptTriggerLevel(t *testing.T) {
	tests := []struct {
		fcr     byte
		trigger int
	}{
		{fcrEnable | 0x00, 1},
		{fcrEnable | 0x40, 4},
		{fcrEnable | 0x80, 8},
		{fcrEnable | 0xC0, 14},
	}
	for _, tt := range tests {
		s, irq, _ := newTestSerial()
		outb(s, uartFCR, tt.fcr)
		outb(s, uartIER, ierERBFI)
		assert.Empty(t, irq.transitions())

		// Below the trigger level, the FIFO times out at once: no more
		// input is coming.
		if tt.trigger > 1 {
			require.Equal(t, tt.trigger-1, s.Receive(bytes.Repeat([]byte{'x'}, tt.trigger-1)))
			assert.Equal(t, []bool{true}, irq.transitions(), "trigger %d", tt.trigger)
			assert.Equal(t, byte(iirFIFO|iirCTI), inb(s, uartIIR), "trigger %d", tt.trigger)
		}
		// At the trigger level, received data available.
		s.Receive([]byte{'y'})
		assert.Equal(t, byte(iirFIFO|iirRDI), inb(s, uartIIR), "trigger %d", tt.trigger)
		// Reading the FIFO empty drops the line.
		for inb(s, uartLSR)&lsrDR != 0 {
			inb(s, uartRBR)
		}
		assert.Equal(t, byte(iirFIFO|iirNone), inb(s, uartIIR))
		assert.False(t, irq.level())
	}
}

func TestSerialRXNoFIFO(t *testing.T) {
	s, irq, _ := newTestSerial()
	outb(s, uartIER, ierERBFI)
	require.Equal(t, 3, s.Receive([]byte("abc")))
	assert.True(t, irq.level())
	assert.Equal(t, byte(iirRDI), inb(s, uartIIR), "16450 mode has no character timeout")
	assert.Equal(t, byte(lsrDR|lsrTHRE|lsrTEMT), inb(s, uartLSR))
	got := []byte{}
	for inb(s, uartLSR)&lsrDR != 0 {
		got = append(got, inb(s, uartRBR))
	}
	assert.Equal(t, "abc", string(got))
	assert.False(t, irq.level())
	assert.Equal(t, byte('c'), inb(s, uartRBR), "an empty RBR reads its last byte again")
}

func TestSerialRXPriority(t *testing.T) {
	s, _, _ := newTestSerial()
	outb(s, uartFCR, fcrEnable)
	outb(s, uartIER, ierERBFI|ierETBEI|ierELSI|ierEDSSI)
	outb(s, uartMCR, mcrLOOP|mcrRTS) // CTS changes: modem status pending
	for range 17 {
		outb(s, uartTHR, 'z') // fills the FIFO and overruns; THRE pending
	}
	assert.Equal(t, byte(iirFIFO|iirRLSI), inb(s, uartIIR))
	inb(s, uartLSR)
	assert.Equal(t, byte(iirFIFO|iirRDI), inb(s, uartIIR))
	outb(s, uartFCR, fcrEnable|fcrClearRx)
	assert.Equal(t, byte(iirFIFO|iirTHRI), inb(s, uartIIR))
	assert.Equal(t, byte(iirFIFO|iirMSI), inb(s, uartIIR))
	inb(s, uartMSR)
	assert.Equal(t, byte(iirFIFO|iirNone), inb(s, uartIIR))
}

func TestSerialLSR(t *testing.T) {
	s, _, _ := newTestSerial()
	outb(s, uartFCR, fcrEnable)
	assert.Equal(t, byte(lsrTHRE|lsrTEMT), inb(s, uartLSR))
	s.Receive([]byte("q"))
	assert.Equal(t, byte(lsrDR|lsrTHRE|lsrTEMT), inb(s, uartLSR))
	outb(s, uartTHR, 'w')
	assert.Equal(t, byte(lsrDR|lsrTHRE|lsrTEMT), inb(s, uartLSR), "transmission is instantaneous")
	outb(s, uartLSR, 0x00)
	assert.Equal(t, byte(lsrDR|lsrTHRE|lsrTEMT), inb(s, uartLSR), "LSR writes are ignored")
	inb(s, uartRBR)
	assert.Equal(t, byte(lsrTHRE|lsrTEMT), inb(s, uartLSR))
}

func TestSerialOutput(t *testing.T) {
	s, _, out := newTestSerial()
	for _, c := range []byte("hello\r\n") {
		// earlyprintk polls THRE before each byte.
		require.NotZero(t, inb(s, uartLSR)&lsrTHRE)
		outb(s, uartTHR, c)
	}
	assert.Equal(t, "hello\r\n", out.String())
}

func TestSerialReceiveBackPressure(t *testing.T) {
	s, _, _ := newTestSerial()
	outb(s, uartFCR, fcrEnable)
	in := make([]byte, SerialInputQueueSize+1000)
	for i := range in {
		in[i] = byte(i * 7)
	}
	n := s.Receive(in)
	require.Equal(t, SerialInputQueueSize, n, "Receive takes what fits in the queue")
	// The queue moved 16 bytes into the FIFO, so 16 more fit.
	n += s.Receive(in[n:])
	require.Equal(t, SerialInputQueueSize+serialFIFOSize, n)
	require.Zero(t, s.Receive(in[n:]))

	select {
	case <-s.InputSpace():
		t.Fatal("space signalled before the guest read anything")
	default:
	}

	// The guest drains the queue; nothing is lost or reordered.
	got := make([]byte, 0, len(in))
	signalled := false
	for inb(s, uartLSR)&lsrDR != 0 {
		got = append(got, inb(s, uartRBR))
		select {
		case <-s.InputSpace():
			require.False(t, signalled, "signalled twice for one short Receive")
			signalled = true
			assert.LessOrEqual(t, s.hostLen, SerialInputQueueSize/2)
			n += s.Receive(in[n:])
		default:
		}
	}
	assert.True(t, signalled)
	assert.Equal(t, len(in), n)
	assert.Equal(t, in, got)
}

func TestSerialFIFOClear(t *testing.T) {
	s, _, _ := newTestSerial()
	outb(s, uartFCR, fcrEnable)
	s.Receive([]byte("0123456789abcdefXYZ"))
	// Clearing drops what sat in the FIFO; the rest of the queue flows in.
	outb(s, uartFCR, fcrEnable|fcrClearRx)
	assert.Equal(t, byte('X'), inb(s, uartRBR))
	// Disabling the FIFO clears it too, and leaves a one-byte receiver.
	outb(s, uartFCR, 0)
	assert.Equal(t, byte(lsrTHRE|lsrTEMT), inb(s, uartLSR))
}

func TestSerialWideAccess(t *testing.T) {
	s, _, out := newTestSerial()
	// A 32-bit write at offset 0 is THR, IER, FCR, LCR in turn.
	s.Write(0, []byte{'!', ierETBEI, fcrEnable, 0x03})
	assert.Equal(t, "!", out.String())
	assert.Equal(t, byte(ierETBEI), inb(s, uartIER))
	assert.Equal(t, byte(0x03), inb(s, uartLCR))
	// A 16-bit read at LSR reads LSR and MSR; beyond SCR reads 0xFF.
	buf := make([]byte, 4)
	s.Read(5, buf)
	assert.Equal(t, []byte{lsrTHRE | lsrTEMT, 0xB0, 0x00, 0xFF}, buf)
	s.Read(1<<63, buf)
	assert.Equal(t, []byte{0xFF, 0xFF, 0xFF, 0xFF}, buf)
	s.Write(^uint64(0), []byte{1, 2})
	assert.Equal(t, "!", out.String(), "an offset that wraps must not reach THR")
}

func TestSerialRegisterNames(t *testing.T) {
	s, _, _ := newTestSerial()
	want := []struct{ read, write string }{
		{"RBR/DLL", "THR/DLL"}, {"IER/DLM", "IER/DLM"}, {"IIR", "FCR"}, {"LCR", "LCR"},
		{"MCR", "MCR"}, {"LSR", "LSR"}, {"MSR", "MSR"}, {"SCR", "SCR"}, {"", ""},
	}
	for off, w := range want {
		assert.Equal(t, w.read, s.RegisterName(uint64(off), false))
		assert.Equal(t, w.write, s.RegisterName(uint64(off), true))
	}
	var _ RegisterNamer = s
}

func TestSerialNilArgs(t *testing.T) {
	s := NewSerial(nil, nil)
	outb(s, uartIER, ierETBEI)
	outb(s, uartTHR, 'x')
	s.Receive([]byte("y"))
	assert.Equal(t, byte('y'), inb(s, uartRBR))
}

// checkSerialInvariants checks what must hold whatever the guest did.
func checkSerialInvariants(t testing.TB, s *Serial, irq *checkingIRQ) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rxLen < 0 || s.rxLen > s.rxCap() || s.rxCap() > serialFIFOSize {
		t.Fatalf("receiver holds %d bytes, capacity %d", s.rxLen, s.rxCap())
	}
	if s.hostLen < 0 || s.hostLen > SerialInputQueueSize || len(s.host) != SerialInputQueueSize {
		t.Fatalf("host queue holds %d bytes in %d", s.hostLen, len(s.host))
	}
	if s.mcr&mcrLOOP == 0 && s.hostLen > 0 && s.rxLen < s.rxCap() {
		t.Fatalf("receiver has room (%d/%d) while %d bytes wait", s.rxLen, s.rxCap(), s.hostLen)
	}
	if s.ier&^ierMask != 0 || s.mcr&^mcrMask != 0 || s.fcr&^fcrStored != 0 {
		t.Fatalf("reserved bits set: IER %#x MCR %#x FCR %#x", s.ier, s.mcr, s.fcr)
	}
	if want := s.interruptID() != iirNone; irq.high != want {
		t.Fatalf("IRQ line %v, interrupt pending %v", irq.high, want)
	}
}

// fuzzHostInput is host input for FuzzSerial, shared so that fuzzing does not
// spend its time allocating.
var fuzzHostInput = func() []byte {
	p := make([]byte, 64*2048)
	for i := range p {
		p[i] = byte(i % 251)
	}
	return p
}()

func FuzzSerial(f *testing.F) {
	f.Add([]byte{0x00, 0x05, 0x06, 0x02, 0x40, 'h', 0x41, 0x0F, 0xC3, 0x00, 0x02, 0x05})
	f.Fuzz(func(t *testing.T, in []byte) {
		irq := &checkingIRQ{t: t}
		var out bytes.Buffer
		s := NewSerial(irq, &out)
		writes := 0
		decodeFuzzOps(in, func(op fuzzOp) {
			switch op.kind {
			case fuzzRead:
				s.Read(op.offset, op.data)
				if op.offset == uartIIR && len(op.data) > 0 && op.data[0]&0x30 != 0 {
					t.Fatalf("IIR %#x has bits 5:4 set", op.data[0])
				}
			case fuzzWrite:
				writes++
				s.Write(op.offset, op.data)
			case fuzzHost:
				// Host input in chunks up to 126 KiB, enough to fill
				// the queue.
				p := fuzzHostInput[op.arg : op.arg*2048]
				if n := s.Receive(p); n < 0 || n > len(p) {
					t.Fatalf("Receive(%d bytes) = %d", len(p), n)
				}
			}
			checkSerialInvariants(t, s, irq)
		})
		if out.Len() > writes {
			t.Fatalf("%d bytes output for %d writes", out.Len(), writes)
		}
	})
}

// TestSerialConcurrent runs the host input goroutine against a guest
// draining the UART from two vCPUs; run with -race. Every byte arrives once
// and the IRQ line only ever changes level.
func TestSerialConcurrent(t *testing.T) {
	irq := &fakeIRQ{}
	s := NewSerial(irq, nil)
	outb(s, uartFCR, fcrEnable|0x80)
	outb(s, uartIER, ierERBFI|ierETBEI)

	const total = SerialInputQueueSize + 10000
	in := make([]byte, total)
	for i := range in {
		in[i] = byte(i)
	}
	go func() {
		for sent := 0; sent < total; {
			n := s.Receive(in[sent:min(sent+5000, total)])
			sent += n
			if n == 0 {
				<-s.InputSpace()
			}
		}
	}()

	counts := make(chan int, 2)
	var done sync.WaitGroup
	var mu sync.Mutex
	received := 0
	for range 2 {
		done.Add(1)
		go func() {
			defer done.Done()
			n := 0
			for {
				mu.Lock()
				if received == total {
					mu.Unlock()
					counts <- n
					return
				}
				// Read LSR and RBR as one unit, as Linux does under its
				// port lock.
				if inb(s, uartLSR)&lsrDR != 0 {
					inb(s, uartRBR)
					received++
					n++
				}
				mu.Unlock()
				inb(s, uartIIR)
				outb(s, uartTHR, '.')
			}
		}()
	}
	done.Wait()
	close(counts)
	sum := 0
	for n := range counts {
		sum += n
	}
	require.Equal(t, total, sum)
	levels := irq.transitions()
	for i := 1; i < len(levels); i++ {
		require.NotEqual(t, levels[i-1], levels[i], "SetLevel without a change at %d", i)
	}
}
