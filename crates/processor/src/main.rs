fn main() -> std::process::ExitCode {
    processor::main_with_args(std::env::args())
}
