package format

// RegsAMD64 is the on-disk record of the x86-64 general registers. Field
// numbers follow the kernel's struct user_regs_struct order, but the record
// is the format's own: it does not change when the kernel's does.
type RegsAMD64 struct {
	R15     uint64 `ckpt:"1"`
	R14     uint64 `ckpt:"2"`
	R13     uint64 `ckpt:"3"`
	R12     uint64 `ckpt:"4"`
	Rbp     uint64 `ckpt:"5"`
	Rbx     uint64 `ckpt:"6"`
	R11     uint64 `ckpt:"7"`
	R10     uint64 `ckpt:"8"`
	R9      uint64 `ckpt:"9"`
	R8      uint64 `ckpt:"10"`
	Rax     uint64 `ckpt:"11"`
	Rcx     uint64 `ckpt:"12"`
	Rdx     uint64 `ckpt:"13"`
	Rsi     uint64 `ckpt:"14"`
	Rdi     uint64 `ckpt:"15"`
	OrigRax uint64 `ckpt:"16"`
	Rip     uint64 `ckpt:"17"`
	Cs      uint64 `ckpt:"18"`
	Eflags  uint64 `ckpt:"19"`
	Rsp     uint64 `ckpt:"20"`
	Ss      uint64 `ckpt:"21"`
	FsBase  uint64 `ckpt:"22"`
	GsBase  uint64 `ckpt:"23"`
	Ds      uint64 `ckpt:"24"`
	Es      uint64 `ckpt:"25"`
	Fs      uint64 `ckpt:"26"`
	Gs      uint64 `ckpt:"27"`
}

// RegsARM64 is the on-disk record of the arm64 general registers
// (struct user_pt_regs) plus the TLS register.
type RegsARM64 struct {
	X      []uint64 `ckpt:"1"` // x0..x30, exactly 31 values
	SP     uint64   `ckpt:"2"` // stack pointer
	PC     uint64   `ckpt:"3"` // program counter
	PState uint64   `ckpt:"4"` // processor state
	TPIDR  uint64   `ckpt:"5"` // TLS register tpidr_el0
}
