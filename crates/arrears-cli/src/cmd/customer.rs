//! `arrears customer …`: a customer's contact data and preferences.

use std::process::ExitCode;

use anyhow::Result;
use arrears::app::cases::Caller;
use arrears::server::pb;
use clap::Subcommand;

use super::local_user;
use crate::remote::{describe, Remote};
use crate::Env;

#[derive(Subcommand)]
pub enum CustomerCmd {
    /// Contact data and preferences: what the compliance guard and the channels use.
    #[command(
        after_help = "Examples:\n  arrears customer contact ACME_DE/C000005 --email ap@example.com --opt-out sms\n  arrears customer contact ACME_DE/C000005 --street 'Hauptstr. 5' --postal-code 10115 --city Berlin\n  arrears customer contact ACME_DE/C000005 --do-not-contact true"
    )]
    Contact {
        /// COMPANY/CODE
        customer: String,
        /// E-mail address for reminders.
        #[arg(long)]
        email: Option<String>,
        /// Phone number for SMS and calls.
        #[arg(long)]
        phone: Option<String>,
        /// Free text printed above the street on letters (c/o, building).
        #[arg(long)]
        address: Option<String>,
        /// Street and number. Letters go out only when street, postal code and
        /// city are known (the country is the customer's).
        #[arg(long)]
        street: Option<String>,
        /// Postal code of the letter address.
        #[arg(long)]
        postal_code: Option<String>,
        /// City of the letter address.
        #[arg(long)]
        city: Option<String>,
        /// true: no contact at all (letters included) until set back to false.
        #[arg(long)]
        do_not_contact: Option<bool>,
        /// Channels the customer opted out of (repeat; `none` clears them).
        #[arg(long = "opt-out")]
        opt_outs: Vec<String>,
    },
}

pub fn local(env: &Env, c: CustomerCmd) -> Result<ExitCode> {
    let mut store = env.store()?;
    match c {
        CustomerCmd::Contact {
            customer,
            email,
            phone,
            address,
            street,
            postal_code,
            city,
            do_not_contact,
            opt_outs,
        } => {
            let change = arrears::app::customers::ContactChange {
                email,
                phone,
                address,
                street,
                postal_code,
                city,
                do_not_contact,
                // `--opt-out none` clears them; no flag leaves them.
                opt_outs: (!opt_outs.is_empty()).then(|| {
                    opt_outs
                        .iter()
                        .filter(|o| o.as_str() != "none")
                        .cloned()
                        .collect()
                }),
            };
            let who = local_user();
            let caller = Caller::local_admin(&who, &who.name);
            let p = arrears::app::customers::set_contact(&mut store, &caller, &customer, &change)?;
            outln!(
                "{}/{}: email {}, phone {}, do not contact {}, opted out of [{}]",
                p.company,
                p.code,
                p.email.as_deref().unwrap_or("-"),
                p.phone.as_deref().unwrap_or("-"),
                p.do_not_contact,
                p.opt_outs.join(", ")
            );
            outln!("  {}", letters(&p.postal_address().unwrap_or_default()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn remote(r: &Remote, c: CustomerCmd) -> Result<ExitCode> {
    let CustomerCmd::Contact {
        customer,
        email,
        phone,
        address,
        street,
        postal_code,
        city,
        do_not_contact,
        opt_outs,
    } = c;
    let p = pb::correspondence_client::CorrespondenceClient::new(r.auth())
        .set_contact_preferences(pb::ContactPreferencesRequest {
            customer,
            email: email.unwrap_or_default(),
            phone: phone.unwrap_or_default(),
            address: address.unwrap_or_default(),
            street: street.unwrap_or_default(),
            postal_code: postal_code.unwrap_or_default(),
            city: city.unwrap_or_default(),
            do_not_contact: do_not_contact.map(|b| b.to_string()).unwrap_or_default(),
            set_opt_outs: !opt_outs.is_empty(),
            opt_outs: opt_outs.into_iter().filter(|o| o != "none").collect(),
        })
        .await
        .map_err(describe)?
        .into_inner();
    outln!(
        "{}: email {}, phone {}, do not contact {}, opted out of [{}]",
        p.customer,
        if p.email.is_empty() { "-" } else { &p.email },
        if p.phone.is_empty() { "-" } else { &p.phone },
        p.do_not_contact,
        p.opt_outs.join(", ")
    );
    outln!("  {}", letters(&p.letter_address));
    Ok(ExitCode::SUCCESS)
}

/// Where letters go, on one line, or why none can.
fn letters(block: &str) -> String {
    if block.is_empty() {
        "letters: none can be sent (street, postal code, city or country missing)".into()
    } else {
        format!("letters to: {}", block.replace('\n', ", "))
    }
}
