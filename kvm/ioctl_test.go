package kvm

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pointerProblems checks, like a vet pass, how the package hands addresses
// to the kernel (the unsafe.Pointer rules, case 4):
//
//   - uintptr(p), for p an unsafe.Pointer conversion or an unsafe.Pointer
//     parameter, appears only as a direct argument of a unix.Syscall-family
//     call, or in a function that calls runtime.KeepAlive (an address
//     stored in a struct the kernel reads, such as an MSR filter's bitmap);
//   - ioctlInt's argument contains no unsafe.Pointer and no address-of: a
//     number, never an address;
//   - ioctlPtr's argument is an unsafe.Pointer(...) conversion, not a
//     pointer rebuilt from a uintptr.
//
// It returns one line per violation, with its position.
func pointerProblems(fset *token.FileSet, files []*ast.File) []string {
	var out []string
	report := func(n ast.Node, format string, args ...any) {
		out = append(out, fmt.Sprintf("%s: %s", fset.Position(n.Pos()), fmt.Sprintf(format, args...)))
	}
	for _, f := range files {
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			ptrParams, uintptrParams := map[string]bool{}, map[string]bool{}
			for _, field := range fn.Type.Params.List {
				for _, name := range field.Names {
					ptrParams[name.Name] = isSelector(field.Type, "unsafe", "Pointer")
					uintptrParams[name.Name] = isIdent(field.Type, "uintptr")
				}
			}
			keepsAlive := false
			syscallArgs := map[ast.Expr]bool{}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				if isSelector(call.Fun, "runtime", "KeepAlive") {
					keepsAlive = true
				}
				for _, name := range []string{"Syscall", "Syscall6", "RawSyscall", "RawSyscall6"} {
					if isSelector(call.Fun, "unix", name) {
						for _, a := range call.Args {
							syscallArgs[a] = true
						}
					}
				}
				return true
			})
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				switch {
				case isIdent(call.Fun, "uintptr") && len(call.Args) == 1:
					arg := call.Args[0]
					pointer := isUnsafePointerConv(arg)
					if id, ok := arg.(*ast.Ident); ok && ptrParams[id.Name] {
						pointer = true
					}
					if pointer && !syscallArgs[call] && !keepsAlive {
						report(call, "%s converts a pointer to uintptr outside a system call's argument list", fn.Name.Name)
					}
				case isIdent(call.Fun, "ioctlInt") && len(call.Args) == 3:
					address := false
					ast.Inspect(call.Args[2], func(m ast.Node) bool {
						switch e := m.(type) {
						case *ast.SelectorExpr:
							address = address || isSelector(e, "unsafe", "Pointer")
						case *ast.UnaryExpr:
							address = address || e.Op == token.AND
						}
						return true
					})
					if address {
						report(call.Args[2], "%s passes an address to ioctlInt; use ioctlPtr", fn.Name.Name)
					}
				case isIdent(call.Fun, "ioctlPtr") && len(call.Args) == 3:
					if !isUnsafePointerConv(call.Args[2]) {
						report(call.Args[2], "%s: ioctlPtr's argument must be unsafe.Pointer(&x) or unsafe.Pointer(p)", fn.Name.Name)
						break
					}
					switch inner := call.Args[2].(*ast.CallExpr).Args[0].(type) {
					case *ast.CallExpr:
						if isIdent(inner.Fun, "uintptr") {
							report(inner, "%s: ioctlPtr's argument is rebuilt from a uintptr", fn.Name.Name)
						}
					case *ast.Ident:
						if uintptrParams[inner.Name] {
							report(inner, "%s: ioctlPtr's argument is rebuilt from a uintptr", fn.Name.Name)
						}
					}
				}
				return true
			})
		}
	}
	return out
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

func isSelector(e ast.Expr, pkg, name string) bool {
	s, ok := e.(*ast.SelectorExpr)
	return ok && isIdent(s.X, pkg) && s.Sel.Name == name
}

func isUnsafePointerConv(e ast.Expr) bool {
	c, ok := e.(*ast.CallExpr)
	return ok && len(c.Args) == 1 && isSelector(c.Fun, "unsafe", "Pointer")
}

// TestPointerArguments runs the check over the package's own source.
func TestPointerArguments(t *testing.T) {
	paths, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		require.NoError(t, err)
		files = append(files, f)
	}
	require.NotEmpty(t, files)
	assert.Empty(t, pointerProblems(fset, files))
}

// TestPointerProblemsFinds shows that the check catches each pattern it is
// meant to, and accepts the package's own forms.
func TestPointerProblemsFinds(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want string // a substring of one of the problems expected; "" for none
	}{
		{"a uintptr helper",
			`func ptr[T any](v *T) uintptr { return uintptr(unsafe.Pointer(v)) }`,
			"ptr converts a pointer to uintptr"},
		{"an address to ioctlInt",
			`func f(fd int) { var r Regs; ioctlInt(fd, reqGetRegs, uintptr(unsafe.Pointer(&r))) }`,
			"passes an address to ioctlInt"},
		{"a pointer to ioctlInt through a helper",
			`func f(fd int) { var r Regs; ioctlInt(fd, reqGetRegs, ptr(&r)) }`,
			"passes an address to ioctlInt"},
		{"a uintptr parameter made a pointer",
			`func f(fd int, a uintptr) { ioctlPtr(fd, reqGetRegs, unsafe.Pointer(a)) }`,
			"rebuilt from a uintptr"},
		{"a pointer rebuilt from a uintptr",
			`func f(fd int, r *Regs) { ioctlPtr(fd, reqGetRegs, unsafe.Pointer(uintptr(unsafe.Pointer(r)))) }`,
			"rebuilt from a uintptr"},
		{"not a conversion",
			`func f(fd int, p unsafe.Pointer) { ioctlPtr(fd, reqGetRegs, p) }`,
			"must be unsafe.Pointer"},
		{"an address in a struct, not kept alive",
			`func f(fd int, b []byte) { var s msrFilterRange; s.Bitmap = uintptr(unsafe.Pointer(&b[0])); ioctlPtr(fd, reqSetMSRFilter, unsafe.Pointer(&s)) }`,
			"f converts a pointer to uintptr"},
		{"an address in a struct, kept alive",
			`func f(fd int, b []byte) { var s msrFilterRange; s.Bitmap = uintptr(unsafe.Pointer(&b[0])); ioctlPtr(fd, reqSetMSRFilter, unsafe.Pointer(&s)); runtime.KeepAlive(b) }`,
			""},
		{"ioctlPtr's body",
			`func ioctlPtr(fd int, req uintptr, arg unsafe.Pointer) { unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg)) }`,
			""},
		{"a pointer parameter converted early",
			`func g(fd int, req uintptr, arg unsafe.Pointer) { a := uintptr(arg); unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, a) }`,
			"g converts a pointer to uintptr"},
		{"numbers to ioctlInt",
			`func f(fd, id int) { ioctlInt(fd, reqCreateVCPU, uintptr(id)); ioctlInt(fd, reqRun, 0) }`,
			""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, "x.go", "package kvm\n"+tc.src, 0)
			require.NoError(t, err)
			got := pointerProblems(fset, []*ast.File{f})
			if tc.want == "" {
				assert.Empty(t, got)
				return
			}
			assert.Condition(t, func() bool {
				for _, p := range got {
					if strings.Contains(p, tc.want) {
						return true
					}
				}
				return false
			}, "want a problem containing %q, got %q", tc.want, got)
		})
	}
}
