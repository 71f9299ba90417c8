package fallback

// emulateFwait emulates fwait/wait (9B; SDM vol. 2A, "WAIT/FWAIT"), which
// waits for pending unmasked x87 exceptions to be handled. It raises #NM when
// CR0.MP and CR0.TS are both set; otherwise it is skipped. A pending x87
// exception (FSW.ES) is not delivered as #MF here: Linux executes fwait in
// fpu__drop precisely to discard such an exception from a dying context
// (with an exception-table entry that skips the fwait), so skipping is what
// it wants, and x87 code elsewhere runs at CPL3, natively.
func emulateFwait(s *state) error {
	if s.sregs.CR0&(cr0MP|cr0TS) == cr0MP|cr0TS {
		return &exception{vector: vecNM}
	}
	return nil
}
