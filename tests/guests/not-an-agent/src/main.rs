fn main() {
    println!("I am not a Sabot agent");
}
