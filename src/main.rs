fn main() -> std::process::ExitCode {
    scalper::cli::main()
}
