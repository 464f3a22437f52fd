fn main() -> std::process::ExitCode {
    producer::main_with_args(std::env::args())
}
